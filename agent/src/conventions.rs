//! Registrator's conventions: from one container's facts to the Consul registrations it should
//! have. Pure: no I/O, no clock; everything it needs comes in [`ContainerInfo`] and
//! [`MappingSettings`].
//!
//! # What is registered
//! - One service per port: published ports (host port, at `-ip`) by default; with `-internal`,
//!   every exposed port at the container's own IP. Ports not published are skipped without
//!   `-internal`, as in Registrator.
//! - Only running containers, not paused or restarting ones. With `-deregister=on-success`, a
//!   container that exited with a failure code (not 0, not killed by a signal) keeps the
//!   registrations it had ([`retained_exit`]); it gets no new ones, since a stopped container
//!   publishes no ports.
//! - Env vars and labels are read alike (a label wins over an env var of the same name, a
//!   `SERVICE_<port>_X` over `SERVICE_X`): `SERVICE_NAME`, `SERVICE_TAGS`, `SERVICE_ID`,
//!   `SERVICE_IGNORE` (any non-empty value, as in Registrator), `SERVICE_CHECK_*`, and their
//!   per-port forms. Other `SERVICE_X` values become service Meta `x`, as in Registrator.
//! - Defaults as Registrator's: name from the image (no registry, no tag, no digest), `-<port>`
//!   suffix when the container has several ports and no per-port name, ID
//!   `<hostname>:<container-name>:<port>` (`:udp` appended for UDP, which also gets the `udp` tag).
//!
//! # Networks: the choices made here
//! - **Host network** (`--net=host`): the container has no published ports and no IP of its own;
//!   each exposed port (`EXPOSE` / `--expose`) is registered at the host's address (`-ip`, else
//!   the host's name resolved) with the exposed port number, with or without `-internal` (as
//!   Registrator does without `-internal`).
//! - **Several networks, with `-internal`**: the IP comes from the network named by the
//!   container's `berth.network` label; else from its primary network (the one it was created
//!   with, `--network`, e.g. a compose project's network); else from `bridge`; else from the first
//!   network by name. A `berth.network` naming a network the container is not attached to is an
//!   error for that container. Without `-internal` the address is the host's, whatever the
//!   networks.
//! - **`container:<id>` network mode**: the container has no ports of its own on the host; it is
//!   registered only with `-internal`, at the IP of the container whose network it shares.
//!
//! # Errors
//! A malformed value (a non-numeric port in a key, a bad interval, an unknown check type) skips
//! the registrations it concerns with a [`MappingError`] naming the container and the key; the
//! container's other ports and all other containers are still registered. Meta attributes Consul
//! would refuse (bad key characters, too long) are dropped with a warning instead.
//!
//! This module does not talk to Docker or Consul, and does not decide what to remove: see
//! [`crate::reconcile`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use berth_consul::agent::{CheckDefinition, ServiceRegistration};

use crate::cli::DeregisterMode;
use crate::container::{ContainerInfo, DockerHealth, HealthStatus, HostBinding, RunState};
use crate::duration::is_go_duration;

/// Meta key naming the agent that owns a registration.
pub(crate) const META_AGENT: &str = "berth-agent-id";
/// Meta key naming the container a registration is for.
pub(crate) const META_CONTAINER: &str = "berth-container-id";
/// Meta key holding a fingerprint of the registration, to register again only when it changes.
pub(crate) const META_SPEC: &str = "berth-spec";
/// Label naming the network whose IP to register with `-internal`.
pub(crate) const NETWORK_LABEL: &str = "berth.network";

/// Check types the agent turns into Consul checks, and the attributes that qualify them.
const CHECK_TYPES: [&str; 5] = ["http", "https", "ttl", "tcp", "grpc"];
const CHECK_MODIFIERS: [&str; 7] = [
    "interval",
    "timeout",
    "initial_status",
    "deregister_after",
    "http_method",
    "tls_skip_verify",
    "grpc_use_tls",
];
/// Registrator check types that run commands, which Berth does not do.
const COMMAND_CHECKS: [&str; 3] = ["cmd", "script", "docker"];
const DEFAULT_INTERVAL: &str = "10s";
/// Consul's limits on service Meta.
const META_MAX_PAIRS: usize = 64;
const META_MAX_KEY: usize = 128;
const META_MAX_VALUE: usize = 512;
/// Longest probe output copied into a check's output.
const MAX_OUTPUT: usize = 1000;

/// The agent-wide inputs of the mapping, from the command line and the host.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MappingSettings {
    /// This host's name, the first part of default service IDs.
    pub hostname: String,
    /// Stored in every registration's Meta ([`META_AGENT`]).
    pub agent_id: String,
    /// `-ip`: the address for published ports, whatever they are bound to.
    pub forced_ip: Option<String>,
    /// The host's own address, for ports bound to all interfaces when `-ip` is not given.
    pub host_ip: String,
    pub internal: bool,
    pub explicit: bool,
    pub require_label: bool,
    /// `-tags`, appended to every service's tags.
    pub force_tags: Vec<String>,
    pub use_ip_from_label: Option<String>,
    pub deregister: DeregisterMode,
    /// `-ttl`: a TTL check the agent keeps passing on every service.
    pub agent_ttl: Option<Duration>,
    /// TTL of the check mirroring a Docker HEALTHCHECK.
    pub health_ttl: Duration,
}

/// One service the agent wants in Consul, with the container it comes from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Registration {
    /// The full definition, Meta included ([`META_AGENT`], [`META_CONTAINER`], [`META_SPEC`]).
    pub service: ServiceRegistration,
    pub container_id: String,
    pub container_name: String,
    /// The container port it is for: `9090/tcp`.
    pub port_label: String,
    /// The env var or label that set the service ID, if one did.
    pub id_key: Option<String>,
    /// TTL checks whose status the agent sets (Docker health mirror, `-ttl`).
    pub driven: Vec<DrivenCheck>,
}

/// A TTL check the agent keeps updated, and the status it should have now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DrivenCheck {
    pub check_id: String,
    /// `passing` or `critical`.
    pub status: &'static str,
    pub output: String,
}

/// What one container maps to.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Mapping {
    pub registrations: Vec<Registration>,
    /// Registrations skipped because of a malformed value.
    pub errors: Vec<MappingError>,
    /// Things dropped that Consul would refuse; the registration goes ahead without them.
    pub warnings: Vec<String>,
    /// Why ports were not registered, by design (not published, ignored, not explicit).
    pub notes: Vec<String>,
}

/// A malformed value that skips one registration, or all of a container's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("container {container} ({short_id}): {key}: {problem}; {skipped} skipped")]
pub(crate) struct MappingError {
    pub container: String,
    pub short_id: String,
    /// The env var or label at fault, as the container spells it.
    pub key: String,
    pub problem: Problem,
    pub skipped: Skipped,
}

/// What is wrong with a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Problem {
    #[error("{port:?} is not a port number (SERVICE_<port>_<attribute> needs a port from 1 to 65535)")]
    BadPortInKey { port: String },
    #[error("{value:?} is not a duration such as 10s, 1m30s or 500ms")]
    BadDuration { value: String },
    #[error("{value:?} is not a check status (passing, warning or critical)")]
    BadStatus { value: String },
    #[error("{value:?} is not a path; an HTTP check needs one starting with /, such as /health")]
    BadPath { value: String },
    #[error(
        "unknown check type (berth-agent knows SERVICE_CHECK_HTTP, _HTTPS, _TCP, _TTL and _GRPC, qualified by \
         _INTERVAL, _TIMEOUT, _INITIAL_STATUS, _DEREGISTER_AFTER, _HTTP_METHOD, _TLS_SKIP_VERIFY, _GRPC_USE_TLS)"
    )]
    UnknownCheck,
    #[error(
        "{kind} checks run commands, which berth-agent does not do; use an HTTP, TCP or TTL check, or a Docker \
         HEALTHCHECK (mirrored to Consul automatically)"
    )]
    UnsupportedCheck { kind: String },
    #[error("the container is not attached to network {network:?} (it is attached to: {attached})")]
    UnknownNetwork { network: String, attached: String },
    #[error("service ID {id:?} is already taken by container {other}")]
    DuplicateId { id: String, other: String },
}

/// Which registrations a [`MappingError`] skips.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Skipped {
    Container,
    Port(String),
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skipped::Container => f.write_str("all its registrations are"),
            Skipped::Port(port) => write!(f, "the registration of port {port} is"),
        }
    }
}

/// Everything the running containers map to, with service IDs made unique.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Desired {
    pub registrations: Vec<Registration>,
    pub errors: Vec<MappingError>,
    pub warnings: Vec<String>,
    pub notes: Vec<String>,
}

/// Maps every container, in name order, and refuses a service ID already taken by another
/// registration (the first one in that order keeps it).
pub(crate) fn desired(containers: &[ContainerInfo], settings: &MappingSettings) -> Desired {
    let mut sorted: Vec<&ContainerInfo> = containers.iter().collect();
    sorted.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    let mut out = Desired::default();
    let mut taken: BTreeMap<String, String> = BTreeMap::new();
    for container in sorted {
        let mapping = map_container(container, settings);
        out.errors.extend(mapping.errors);
        out.warnings.extend(mapping.warnings);
        out.notes.extend(mapping.notes);
        for registration in mapping.registrations {
            let id = registration.service.id.clone();
            if let Some(other) = taken.get(&id) {
                out.errors.push(MappingError {
                    container: container.name.clone(),
                    short_id: container.short_id().to_string(),
                    key: registration.id_key.clone().unwrap_or_else(|| "service ID".into()),
                    problem: Problem::DuplicateId {
                        id,
                        other: other.clone(),
                    },
                    skipped: Skipped::Port(registration.port_label.clone()),
                });
                continue;
            }
            taken.insert(id, container.name.clone());
            out.registrations.push(registration);
        }
    }
    out
}

/// One `SERVICE_*` value and the env var or label it came from.
#[derive(Debug, Clone)]
struct Attr {
    key: String,
    value: String,
}

/// A container's `SERVICE_*` values: container-wide, and per exposed port.
#[derive(Debug, Default)]
struct Conventions {
    generic: BTreeMap<String, Attr>,
    per_port: BTreeMap<u16, BTreeMap<String, Attr>>,
}

/// The attributes that apply to one port, and which of them were set for that port.
struct PortAttrs {
    attrs: BTreeMap<String, Attr>,
    from_port: BTreeSet<String>,
}

impl PortAttrs {
    fn get(&self, name: &str) -> Option<&Attr> {
        self.attrs.get(name)
    }
    fn value(&self, name: &str) -> Option<&str> {
        self.attrs.get(name).map(|a| a.value.as_str())
    }
}

/// One port to register: its exposed number and protocol, and where the host publishes it.
#[derive(Debug, Clone)]
struct ServicePort {
    exposed: u16,
    proto: String,
    /// The host binding; for host-network containers, the exposed port itself.
    binding: Option<HostBinding>,
}

impl ServicePort {
    fn label(&self) -> String {
        format!("{}/{}", self.exposed, self.proto)
    }
}

/// Maps one container to its registrations. See the module documentation for the rules.
pub(crate) fn map_container(c: &ContainerInfo, s: &MappingSettings) -> Mapping {
    let mut out = Mapping::default();
    if c.state != RunState::Running {
        out.notes.push(format!(
            "container {} ({}): {}: nothing to register",
            c.name,
            c.short_id(),
            c.state
        ));
        return out;
    }
    let conventions = match collect(c) {
        Ok(conventions) => conventions,
        Err(error) => {
            out.errors.push(*error);
            return out;
        }
    };
    if s.require_label
        && !c.labels.contains_key("SERVICE_REGISTER")
        && !conventions.generic.contains_key("register")
    {
        out.notes.push(format!(
            "container {} ({}): no SERVICE_REGISTER label (-require-label)",
            c.name,
            c.short_id()
        ));
        return out;
    }
    let error = |key: &str, problem: Problem, skipped: Skipped| MappingError {
        container: c.name.clone(),
        short_id: c.short_id().to_string(),
        key: key.to_string(),
        problem,
        skipped,
    };

    let host_mode = c.network_mode == "host";
    let shared = c.network_mode.starts_with("container:");
    if shared && !s.internal {
        out.notes.push(format!(
            "container {} ({}): shares the network of {}; its ports are registered only with -internal",
            c.name,
            c.short_id(),
            c.network_mode
        ));
        return out;
    }
    let ports = service_ports(c, s.internal, host_mode, &mut out.notes);
    if ports.is_empty() {
        return out;
    }
    // The container's own address, for -internal.
    let container_ip = if host_mode {
        Some(host_address(None, s))
    } else if s.internal {
        match internal_ip(c) {
            Ok(Some(ip)) => Some(ip),
            Ok(None) => {
                out.notes.push(format!(
                    "container {} ({}): no IP address on any network",
                    c.name,
                    c.short_id()
                ));
                return out;
            }
            Err(problem) => {
                out.errors.push(error(NETWORK_LABEL, problem, Skipped::Container));
                return out;
            }
        }
    } else {
        None
    };

    let is_group = ports.len() > 1;
    for port in &ports {
        let attrs = port_attrs(&conventions, port.exposed);
        if let Some(ignore) = attrs.get("ignore") {
            out.notes.push(format!(
                "container {}: port {} ignored ({})",
                c.name,
                port.label(),
                ignore.key
            ));
            continue;
        }
        let mut name = match attrs.value("name") {
            Some(name) => name.to_string(),
            None if s.explicit => {
                out.notes.push(format!(
                    "container {}: port {} has no SERVICE_NAME (-explicit)",
                    c.name,
                    port.label()
                ));
                continue;
            }
            None => default_name(&c.image),
        };
        if is_group && !attrs.from_port.contains("name") {
            name = format!("{name}-{}", port.exposed);
        }
        let (mut address, service_port) = match (&container_ip, &port.binding) {
            (Some(ip), _) if s.internal || host_mode => (ip.clone(), port.exposed),
            (_, Some(binding)) => match binding.host_port.parse::<u16>() {
                Ok(host_port) => (host_address(Some(binding), s), host_port),
                Err(_) => {
                    out.notes.push(format!(
                        "container {}: port {} is published on host port {:?}, not a number",
                        c.name,
                        port.label(),
                        binding.host_port
                    ));
                    continue;
                }
            },
            _ => continue,
        };
        if let Some(label) = &s.use_ip_from_label {
            match c.labels.get(label).filter(|v| !v.is_empty()) {
                Some(value) => {
                    address = value
                        .rsplit_once('/')
                        .map_or(value.as_str(), |(ip, _)| ip)
                        .to_string()
                }
                None => out.notes.push(format!(
                    "container {}: no label {label:?} (-useIpFromLabel)",
                    c.name
                )),
            }
        }
        let udp = port.proto == "udp";
        let mut id = format!("{}:{}:{}", s.hostname, c.name, port.exposed);
        if udp {
            id.push_str(":udp");
        }
        let mut id_key = None;
        if let Some(attr) = attrs.get("id") {
            id = attr.value.clone();
            id_key = Some(attr.key.clone());
        }
        let mut tags = attrs
            .value("tags")
            .map(crate::cli::split_tags)
            .unwrap_or_default();
        tags.extend(s.force_tags.iter().cloned());
        if udp {
            tags.push("udp".into());
        }
        dedupe(&mut tags);

        let check = match service_check(&attrs, &id, &name, &address, service_port) {
            Ok(check) => check,
            Err((key, problem)) => {
                out.errors.push(error(&key, problem, Skipped::Port(port.label())));
                continue;
            }
        };
        let mut checks: Vec<CheckDefinition> = check.into_iter().collect();
        let mut driven = Vec::new();
        if let Some(health) = &c.health {
            let (check, status) = health_check(&id, c, health, s.health_ttl);
            checks.push(check);
            driven.push(status);
        }
        if let Some(ttl) = s.agent_ttl {
            let check_id = format!("service:{id}:agent-ttl");
            checks.push(CheckDefinition {
                check_id: check_id.clone(),
                name: format!("berth-agent on {} is running", s.hostname),
                ttl: Some(format!("{}s", ttl.as_secs())),
                status: Some("passing".into()),
                ..CheckDefinition::default()
            });
            driven.push(DrivenCheck {
                check_id,
                status: "passing",
                output: format!("berth-agent {} is running", s.agent_id),
            });
        }

        let mut meta = meta_attrs(&attrs, c, &mut out.warnings);
        meta.insert(META_AGENT.into(), s.agent_id.clone());
        meta.insert(META_CONTAINER.into(), c.id.clone());
        let mut service = ServiceRegistration {
            id,
            name,
            tags,
            address,
            port: service_port,
            meta,
            checks,
        };
        let spec = fingerprint(&service);
        service.meta.insert(META_SPEC.into(), spec);
        out.registrations.push(Registration {
            service,
            container_id: c.id.clone(),
            container_name: c.name.clone(),
            port_label: port.label(),
            id_key,
            driven,
        });
    }
    out
}

/// With `-deregister=on-success`, the exit code of a container that stopped with a failure (not
/// 0, and not 128+n, killed by a signal, as in Registrator): its registrations are kept.
pub(crate) fn retained_exit(state: &RunState, mode: DeregisterMode) -> Option<i64> {
    match state {
        RunState::Exited { code } if mode == DeregisterMode::OnSuccess && *code != 0 && *code & 0x80 == 0 => {
            Some(*code)
        }
        _ => None,
    }
}

/// Reads the container's `SERVICE_*` env vars, then labels (a label overrides an env var).
fn collect(c: &ContainerInfo) -> Result<Conventions, Box<MappingError>> {
    let env = c.env.iter().filter_map(|kv| kv.split_once('='));
    let labels = c.labels.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    let mut conventions = Conventions::default();
    for (key, value) in env.chain(labels) {
        let Some(rest) = key.strip_prefix("SERVICE_") else {
            continue;
        };
        // An empty value is no value, as in Registrator.
        if value.is_empty() || rest.is_empty() {
            continue;
        }
        let attr = Attr {
            key: key.to_string(),
            value: value.to_string(),
        };
        let lower = rest.to_ascii_lowercase();
        match lower.split_once('_') {
            Some((port, name)) if port.starts_with(|ch: char| ch.is_ascii_digit()) && !name.is_empty() => {
                let Some(port) = port.parse::<u16>().ok().filter(|p| *p > 0) else {
                    return Err(Box::new(MappingError {
                        container: c.name.clone(),
                        short_id: c.short_id().to_string(),
                        key: key.to_string(),
                        problem: Problem::BadPortInKey {
                            port: rest[..port.len()].to_string(),
                        },
                        skipped: Skipped::Container,
                    }));
                };
                conventions
                    .per_port
                    .entry(port)
                    .or_default()
                    .insert(name.to_string(), attr);
            }
            _ => {
                conventions.generic.insert(lower, attr);
            }
        }
    }
    Ok(conventions)
}

fn port_attrs(conventions: &Conventions, port: u16) -> PortAttrs {
    let mut attrs = conventions.generic.clone();
    let mut from_port = BTreeSet::new();
    if let Some(specific) = conventions.per_port.get(&port) {
        for (name, attr) in specific {
            attrs.insert(name.clone(), attr.clone());
            from_port.insert(name.clone());
        }
    }
    PortAttrs { attrs, from_port }
}

/// The ports to register, sorted, with their host bindings.
fn service_ports(
    c: &ContainerInfo,
    internal: bool,
    host_mode: bool,
    notes: &mut Vec<String>,
) -> Vec<ServicePort> {
    let mut keys: BTreeSet<&str> = c.exposed_ports.iter().map(String::as_str).collect();
    if !host_mode {
        keys.extend(c.ports.keys().map(String::as_str));
    }
    let mut ports = Vec::new();
    for key in keys {
        let (number, proto) = key.split_once('/').unwrap_or((key, "tcp"));
        let Some(exposed) = number.parse::<u16>().ok().filter(|p| *p > 0) else {
            notes.push(format!(
                "container {}: exposed port {key:?} is not a port number",
                c.name
            ));
            continue;
        };
        let binding = if host_mode {
            Some(HostBinding {
                host_ip: String::new(),
                host_port: exposed.to_string(),
            })
        } else {
            c.ports.get(key).and_then(|bindings| published(bindings)).cloned()
        };
        if binding.is_none() && !internal {
            notes.push(format!(
                "container {} ({}): port {key} not published on the host",
                c.name,
                c.short_id()
            ));
            continue;
        }
        ports.push(ServicePort {
            exposed,
            proto: proto.to_ascii_lowercase(),
            binding,
        });
    }
    ports.sort_by(|a, b| (a.exposed, &a.proto).cmp(&(b.exposed, &b.proto)));
    ports
}

/// The binding to register: the first one with a host port, IPv4 preferred.
fn published(bindings: &[HostBinding]) -> Option<&HostBinding> {
    let mut with_port = bindings.iter().filter(|b| !b.host_port.is_empty());
    let first = with_port.clone().next();
    with_port.find(|b| !b.host_ip.contains(':')).or(first)
}

/// The address for a published port: `-ip`, else the specific address it is bound to, else the
/// host's own address.
fn host_address(binding: Option<&HostBinding>, s: &MappingSettings) -> String {
    if let Some(ip) = &s.forced_ip {
        return ip.clone();
    }
    match binding {
        Some(b) if !b.host_ip.is_empty() && b.host_ip != "0.0.0.0" && b.host_ip != "::" => b.host_ip.clone(),
        _ => s.host_ip.clone(),
    }
}

/// The container's IP for `-internal`, per the module's network rules.
fn internal_ip(c: &ContainerInfo) -> Result<Option<String>, Problem> {
    if c.network_mode.starts_with("container:") {
        return Ok(c.shared_ip.clone().filter(|ip| !ip.is_empty()));
    }
    let with_ip = |name: &str| c.networks.get(name).filter(|ip| !ip.is_empty()).cloned();
    if let Some(network) = c.labels.get(NETWORK_LABEL).filter(|n| !n.is_empty()) {
        return match with_ip(network) {
            Some(ip) => Ok(Some(ip)),
            None => Err(Problem::UnknownNetwork {
                network: network.clone(),
                attached: c.networks.keys().cloned().collect::<Vec<_>>().join(", "),
            }),
        };
    }
    let primary = if c.network_mode == "default" {
        "bridge"
    } else {
        c.network_mode.as_str()
    };
    Ok(with_ip(primary)
        .or_else(|| with_ip("bridge"))
        .or_else(|| c.networks.values().find(|ip| !ip.is_empty()).cloned()))
}

/// The service name Registrator derives from an image: `registry:5000/team/app:1.2` → `app`.
pub(crate) fn default_name(image: &str) -> String {
    let base = image.rsplit('/').next().unwrap_or(image);
    let base = base.split('@').next().unwrap_or(base);
    base.split(':').next().unwrap_or(base).to_string()
}

fn dedupe(tags: &mut Vec<String>) {
    let mut seen = BTreeSet::new();
    tags.retain(|t| seen.insert(t.clone()));
}

/// The check a container asks for with `SERVICE_CHECK_*`, validated. Registrator's precedence
/// when several types are set: HTTP, HTTPS, TTL, TCP, gRPC.
fn service_check(
    attrs: &PortAttrs,
    service_id: &str,
    name: &str,
    address: &str,
    port: u16,
) -> Result<Option<CheckDefinition>, (String, Problem)> {
    for (attr_name, attr) in &attrs.attrs {
        let Some(kind) = attr_name.strip_prefix("check_") else {
            continue;
        };
        if CHECK_TYPES.contains(&kind) || CHECK_MODIFIERS.contains(&kind) {
            continue;
        }
        let problem = if COMMAND_CHECKS.contains(&kind) {
            Problem::UnsupportedCheck {
                kind: kind.to_ascii_uppercase(),
            }
        } else {
            Problem::UnknownCheck
        };
        return Err((attr.key.clone(), problem));
    }
    let duration = |attr_name: &str| -> Result<Option<String>, (String, Problem)> {
        match attrs.get(attr_name) {
            None => Ok(None),
            Some(a) if is_go_duration(&a.value) => Ok(Some(a.value.clone())),
            Some(a) => Err((
                a.key.clone(),
                Problem::BadDuration {
                    value: a.value.clone(),
                },
            )),
        }
    };
    let interval = duration("check_interval")?;
    let timeout = duration("check_timeout")?;
    let deregister_after = duration("check_deregister_after")?;
    let status = match attrs.get("check_initial_status") {
        None => None,
        Some(a) if ["passing", "warning", "critical"].contains(&a.value.as_str()) => Some(a.value.clone()),
        Some(a) => {
            return Err((
                a.key.clone(),
                Problem::BadStatus {
                    value: a.value.clone(),
                },
            ))
        }
    };
    let host = if address.contains(':') {
        format!("[{address}]")
    } else {
        address.to_string()
    };
    let mut check = CheckDefinition {
        check_id: format!("service:{service_id}"),
        name: format!("Service '{name}' check"),
        status,
        deregister_critical_service_after: deregister_after,
        ..CheckDefinition::default()
    };
    let http_path = |attr: &Attr| -> Result<String, (String, Problem)> {
        if attr.value.starts_with('/') {
            Ok(attr.value.clone())
        } else {
            Err((
                attr.key.clone(),
                Problem::BadPath {
                    value: attr.value.clone(),
                },
            ))
        }
    };
    if let Some(attr) = attrs.get("check_http") {
        check.http = Some(format!("http://{host}:{port}{}", http_path(attr)?));
        check.method = attrs.value("check_http_method").map(str::to_string);
    } else if let Some(attr) = attrs.get("check_https") {
        check.http = Some(format!("https://{host}:{port}{}", http_path(attr)?));
        check.method = attrs.value("check_http_method").map(str::to_string);
        check.tls_skip_verify = attrs.get("check_tls_skip_verify").is_some();
    } else if let Some(attr) = attrs.get("check_ttl") {
        if !is_go_duration(&attr.value) {
            return Err((
                attr.key.clone(),
                Problem::BadDuration {
                    value: attr.value.clone(),
                },
            ));
        }
        check.ttl = Some(attr.value.clone());
        return Ok(Some(check));
    } else if attrs.get("check_tcp").is_some() {
        check.tcp = Some(format!("{host}:{port}"));
    } else if let Some(attr) = attrs.get("check_grpc") {
        let service = match attr.value.as_str() {
            "true" | "1" | "yes" => String::new(),
            other => format!("/{}", other.trim_start_matches('/')),
        };
        check.grpc = Some(format!("{host}:{port}{service}"));
        check.grpc_use_tls = attrs.get("check_grpc_use_tls").is_some();
    } else {
        return Ok(None);
    }
    check.interval = Some(interval.unwrap_or_else(|| DEFAULT_INTERVAL.to_string()));
    check.timeout = timeout;
    Ok(Some(check))
}

/// The TTL check mirroring the container's Docker HEALTHCHECK, and the status it should have.
fn health_check(
    service_id: &str,
    c: &ContainerInfo,
    health: &DockerHealth,
    ttl: Duration,
) -> (CheckDefinition, DrivenCheck) {
    let check_id = format!("service:{service_id}:docker-health");
    let (status, output) = health_status(health);
    let check = CheckDefinition {
        check_id: check_id.clone(),
        name: format!("Docker health of container {}", c.name),
        notes: Some("Mirrors the container's Docker HEALTHCHECK; set by berth-agent.".into()),
        ttl: Some(format!("{}s", ttl.as_secs())),
        status: Some(status.into()),
        ..CheckDefinition::default()
    };
    (
        check,
        DrivenCheck {
            check_id,
            status,
            output,
        },
    )
}

/// Consul's view of a Docker health state: only `healthy` passes.
fn health_status(health: &DockerHealth) -> (&'static str, String) {
    let status = if health.status == HealthStatus::Healthy {
        "passing"
    } else {
        "critical"
    };
    let mut output = format!("Docker health: {}", health.status.as_str());
    if health.status == HealthStatus::Unhealthy {
        output.push_str(&format!(" (failing streak {})", health.failing_streak));
    }
    let last = health.last_output.trim();
    if !last.is_empty() {
        output.push_str(": ");
        output.push_str(truncate(last, MAX_OUTPUT));
    }
    (status, output)
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The container's other `SERVICE_*` attributes as Meta, as Registrator does, minus what Consul
/// would refuse (reported in `warnings`).
fn meta_attrs(attrs: &PortAttrs, c: &ContainerInfo, warnings: &mut Vec<String>) -> BTreeMap<String, String> {
    let mut meta = BTreeMap::new();
    for (name, attr) in &attrs.attrs {
        if ["id", "tags", "name"].contains(&name.as_str()) {
            continue;
        }
        let valid_key = !name.is_empty()
            && name.len() <= META_MAX_KEY
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !name.starts_with("consul-")
            && !name.starts_with("berth-");
        if !valid_key {
            warnings.push(format!(
                "container {}: {} is not kept as service Meta (Consul accepts letters, digits, - and _ in keys)",
                c.name, attr.key
            ));
            continue;
        }
        if attr.value.len() > META_MAX_VALUE {
            warnings.push(format!(
                "container {}: {} is not kept as service Meta (longer than {META_MAX_VALUE} characters)",
                c.name, attr.key
            ));
            continue;
        }
        // Keep room for the agent's own three keys.
        if meta.len() >= META_MAX_PAIRS - 3 {
            warnings.push(format!(
                "container {}: {} is not kept as service Meta (too many entries)",
                c.name, attr.key
            ));
            continue;
        }
        meta.insert(name.clone(), attr.value.clone());
    }
    meta
}

/// A fingerprint of everything in a registration except check statuses (which change without
/// the definition changing): FNV-1a over its JSON form.
fn fingerprint(service: &ServiceRegistration) -> String {
    let mut stable = service.clone();
    stable.meta.remove(META_SPEC);
    for check in &mut stable.checks {
        check.status = None;
    }
    let json = serde_json::to_vec(&stable).unwrap_or_default();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in json {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::{DockerHealth, HealthStatus};

    fn settings() -> MappingSettings {
        MappingSettings {
            hostname: "dockerhost".into(),
            agent_id: "agent-1".into(),
            forced_ip: Some("192.168.3.26".into()),
            host_ip: "10.1.1.1".into(),
            internal: false,
            explicit: false,
            require_label: false,
            force_tags: vec![],
            use_ip_from_label: None,
            deregister: DeregisterMode::Always,
            agent_ttl: None,
            health_ttl: Duration::from_secs(90),
        }
    }

    fn binding(port: &str) -> Vec<HostBinding> {
        vec![
            HostBinding {
                host_ip: "0.0.0.0".into(),
                host_port: port.into(),
            },
            HostBinding {
                host_ip: "::".into(),
                host_port: port.into(),
            },
        ]
    }

    /// A running bridge container `web1` of image `registry.local:5000/team/web_go:1.2` publishing
    /// 9090/tcp on 32768.
    fn container() -> ContainerInfo {
        ContainerInfo {
            id: "0123456789abcdef0123456789abcdef".into(),
            name: "web1".into(),
            image: "registry.local:5000/team/web_go:1.2".into(),
            env: vec!["PATH=/bin".into()],
            network_mode: "bridge".into(),
            exposed_ports: vec!["9090/tcp".into()],
            ports: BTreeMap::from([("9090/tcp".to_string(), binding("32768"))]),
            networks: BTreeMap::from([("bridge".to_string(), "172.17.0.2".to_string())]),
            ..ContainerInfo::default()
        }
    }

    fn with_env(mut c: ContainerInfo, env: &[&str]) -> ContainerInfo {
        c.env.extend(env.iter().map(|e| e.to_string()));
        c
    }

    fn with_labels(mut c: ContainerInfo, labels: &[(&str, &str)]) -> ContainerInfo {
        c.labels
            .extend(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        c
    }

    fn with_ports(mut c: ContainerInfo, ports: &[(&str, Option<&str>)]) -> ContainerInfo {
        c.exposed_ports = ports.iter().map(|(p, _)| p.to_string()).collect();
        c.ports = ports
            .iter()
            .map(|(p, host)| (p.to_string(), host.map(binding).unwrap_or_default()))
            .collect();
        c
    }

    fn map(c: &ContainerInfo, s: &MappingSettings) -> Mapping {
        map_container(c, s)
    }

    fn only(m: &Mapping) -> &ServiceRegistration {
        assert!(m.errors.is_empty(), "unexpected errors: {:?}", m.errors);
        assert_eq!(m.registrations.len(), 1, "expected one registration: {m:#?}");
        &m.registrations[0].service
    }

    #[test]
    fn defaults_follow_registrator() {
        let m = map(&container(), &settings());
        let s = only(&m);
        assert_eq!(s.name, "web_go");
        assert_eq!(s.id, "dockerhost:web1:9090");
        assert_eq!(s.address, "192.168.3.26");
        assert_eq!(s.port, 32768);
        assert!(s.tags.is_empty());
        assert!(s.checks.is_empty());
        assert_eq!(s.meta[META_AGENT], "agent-1");
        assert_eq!(s.meta[META_CONTAINER], "0123456789abcdef0123456789abcdef");
        assert_eq!(s.meta[META_SPEC].len(), 16);
        assert!(m.registrations[0].driven.is_empty());
    }

    #[test]
    fn the_articles_tags_are_registered_as_given() {
        let c = with_env(
            container(),
            &["SERVICE_TAGS=traefik.enable=true,traefik.frontend.entryPoints=http,traefik.frontend.rule=Host:go.traefix.example.localhost"],
        );
        let m = map(&c, &settings());
        assert_eq!(
            only(&m).tags,
            [
                "traefik.enable=true",
                "traefik.frontend.entryPoints=http",
                "traefik.frontend.rule=Host:go.traefix.example.localhost"
            ]
        );
    }

    #[test]
    fn name_id_and_tags_from_env() {
        let c = with_env(
            container(),
            &["SERVICE_NAME=web", "SERVICE_ID=web-a", "SERVICE_TAGS= a ,b,,a"],
        );
        let m = map(&c, &settings());
        let s = only(&m);
        assert_eq!((s.name.as_str(), s.id.as_str()), ("web", "web-a"));
        assert_eq!(s.tags, ["a", "b"]);
        assert_eq!(m.registrations[0].id_key.as_deref(), Some("SERVICE_ID"));
    }

    #[test]
    fn labels_work_like_env_and_win_over_it() {
        let c = with_labels(
            container(),
            &[("SERVICE_NAME", "from-label"), ("SERVICE_TAGS", "l")],
        );
        let c = with_env(c, &["SERVICE_NAME=from-env", "SERVICE_TAGS=e"]);
        let m = map(&c, &settings());
        assert_eq!(only(&m).name, "from-label");
        assert_eq!(only(&m).tags, ["l"]);
    }

    #[test]
    fn per_port_values_win_over_container_wide_ones() {
        let c = with_env(
            container(),
            &["SERVICE_9090_NAME=api", "SERVICE_NAME=web", "SERVICE_9090_TAGS=p"],
        );
        let c = with_labels(c, &[("SERVICE_TAGS", "generic")]);
        let m = map(&c, &settings());
        assert_eq!(only(&m).name, "api");
        assert_eq!(only(&m).tags, ["p"]);
    }

    #[test]
    fn per_port_values_for_other_ports_are_ignored() {
        let c = with_env(
            container(),
            &["SERVICE_8500_TAGS=other", "SERVICE_8500_NAME=other"],
        );
        let m = map(&c, &settings());
        assert_eq!(only(&m).name, "web_go");
        assert!(only(&m).tags.is_empty());
    }

    #[test]
    fn several_ports_get_a_suffix_unless_named_per_port() {
        let c = with_ports(
            container(),
            &[("80/tcp", Some("8080")), ("443/tcp", Some("8443"))],
        );
        let c = with_env(c, &["SERVICE_NAME=web", "SERVICE_443_NAME=secure"]);
        let m = map(&c, &settings());
        assert!(m.errors.is_empty());
        let names: Vec<_> = m
            .registrations
            .iter()
            .map(|r| (r.service.name.as_str(), r.service.port))
            .collect();
        assert_eq!(names, [("web-80", 8080), ("secure", 8443)]);
        let ids: Vec<_> = m.registrations.iter().map(|r| r.service.id.as_str()).collect();
        assert_eq!(ids, ["dockerhost:web1:80", "dockerhost:web1:443"]);
    }

    #[test]
    fn udp_ports_get_an_id_suffix_and_a_tag() {
        let c = with_ports(container(), &[("53/udp", Some("5353"))]);
        let c = with_env(c, &["SERVICE_TAGS=dns"]);
        let m = map(&c, &settings());
        let s = only(&m);
        assert_eq!(s.id, "dockerhost:web1:53:udp");
        assert_eq!(s.tags, ["dns", "udp"]);
    }

    #[test]
    fn same_port_tcp_and_udp_are_two_services() {
        let c = with_ports(container(), &[("53/tcp", Some("53")), ("53/udp", Some("53"))]);
        let m = map(&c, &settings());
        let ids: Vec<_> = m.registrations.iter().map(|r| r.service.id.as_str()).collect();
        assert_eq!(ids, ["dockerhost:web1:53", "dockerhost:web1:53:udp"]);
        assert_eq!(m.registrations[0].service.name, "web_go-53");
    }

    #[test]
    fn unpublished_ports_are_skipped_unless_internal() {
        let c = with_ports(container(), &[("80/tcp", Some("8080")), ("9000/tcp", None)]);
        let m = map(&c, &settings());
        // Only one published port: no suffix, as in Registrator.
        assert_eq!(only(&m).name, "web_go");
        assert!(
            m.notes.iter().any(|n| n.contains("9000/tcp not published")),
            "{:?}",
            m.notes
        );

        let internal = MappingSettings {
            internal: true,
            ..settings()
        };
        let m = map(&c, &internal);
        let got: Vec<_> = m
            .registrations
            .iter()
            .map(|r| {
                (
                    r.service.name.as_str(),
                    r.service.address.as_str(),
                    r.service.port,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("web_go-80", "172.17.0.2", 80),
                ("web_go-9000", "172.17.0.2", 9000)
            ]
        );
    }

    #[test]
    fn no_published_port_means_nothing_to_register() {
        let c = with_ports(container(), &[("80/tcp", None)]);
        let m = map(&c, &settings());
        assert!(m.registrations.is_empty() && m.errors.is_empty());
    }

    #[test]
    fn ignore_skips_the_container_or_one_port() {
        let m = map(&with_env(container(), &["SERVICE_IGNORE=true"]), &settings());
        assert!(m.registrations.is_empty());
        let c = with_ports(
            container(),
            &[("80/tcp", Some("8080")), ("443/tcp", Some("8443"))],
        );
        let m = map(&with_labels(c, &[("SERVICE_443_IGNORE", "1")]), &settings());
        // The group suffix still applies: Registrator counts ports before ignoring.
        assert_eq!(only(&m).name, "web_go-80");
        // An empty value is no value.
        let m = map(&with_env(container(), &["SERVICE_IGNORE="]), &settings());
        assert_eq!(m.registrations.len(), 1);
    }

    #[test]
    fn explicit_requires_a_name() {
        let explicit = MappingSettings {
            explicit: true,
            ..settings()
        };
        assert!(map(&container(), &explicit).registrations.is_empty());
        assert_eq!(
            only(&map(&with_env(container(), &["SERVICE_NAME=x"]), &explicit)).name,
            "x"
        );
        let c = with_ports(
            container(),
            &[("80/tcp", Some("8080")), ("443/tcp", Some("8443"))],
        );
        let m = map(&with_env(c, &["SERVICE_443_NAME=tls"]), &explicit);
        assert_eq!(only(&m).name, "tls");
    }

    #[test]
    fn require_label_needs_service_register() {
        let s = MappingSettings {
            require_label: true,
            ..settings()
        };
        assert!(map(&container(), &s).registrations.is_empty());
        assert_eq!(
            map(&with_labels(container(), &[("SERVICE_REGISTER", "true")]), &s)
                .registrations
                .len(),
            1
        );
    }

    #[test]
    fn force_tags_are_appended() {
        let s = MappingSettings {
            force_tags: vec!["dc1".into(), "a".into()],
            ..settings()
        };
        let m = map(&with_env(container(), &["SERVICE_TAGS=a,b"]), &s);
        assert_eq!(only(&m).tags, ["a", "b", "dc1"]);
    }

    #[test]
    fn address_without_ip_flag() {
        let s = MappingSettings {
            forced_ip: None,
            ..settings()
        };
        assert_eq!(only(&map(&container(), &s)).address, "10.1.1.1");
        let mut c = container();
        c.ports.insert(
            "9090/tcp".into(),
            vec![HostBinding {
                host_ip: "127.0.0.1".into(),
                host_port: "8000".into(),
            }],
        );
        assert_eq!(only(&map(&c, &s)).address, "127.0.0.1");
        // -ip wins over a specific binding.
        assert_eq!(only(&map(&c, &settings())).address, "192.168.3.26");
    }

    #[test]
    fn ipv6_only_binding_is_used_when_there_is_no_ipv4_one() {
        let mut c = container();
        c.ports.insert(
            "9090/tcp".into(),
            vec![HostBinding {
                host_ip: "::".into(),
                host_port: "4000".into(),
            }],
        );
        assert_eq!(only(&map(&c, &settings())).port, 4000);
    }

    #[test]
    fn ip_from_label() {
        let s = MappingSettings {
            use_ip_from_label: Some("com.example.ip".into()),
            ..settings()
        };
        let m = map(
            &with_labels(container(), &[("com.example.ip", "10.9.8.7/24")]),
            &s,
        );
        assert_eq!(only(&m).address, "10.9.8.7");
        let m = map(&container(), &s);
        assert_eq!(only(&m).address, "192.168.3.26");
    }

    #[test]
    fn image_names() {
        assert_eq!(default_name("web_go"), "web_go");
        assert_eq!(default_name("web_go:latest"), "web_go");
        assert_eq!(default_name("library/redis:7"), "redis");
        assert_eq!(default_name("registry.local:5000/team/app:1.2"), "app");
        assert_eq!(default_name("registry.local:5000/team/app"), "app");
        assert_eq!(default_name("app@sha256:abcdef"), "app");
        assert_eq!(default_name("team/app:1@sha256:abcdef"), "app");
    }

    #[test]
    fn http_check_from_env() {
        let c = with_env(
            container(),
            &[
                "SERVICE_CHECK_HTTP=/health",
                "SERVICE_CHECK_INTERVAL=5s",
                "SERVICE_CHECK_TIMEOUT=1s",
            ],
        );
        let m = map(&c, &settings());
        let check = &only(&m).checks[0];
        assert_eq!(check.check_id, "service:dockerhost:web1:9090");
        assert_eq!(check.http.as_deref(), Some("http://192.168.3.26:32768/health"));
        assert_eq!(check.interval.as_deref(), Some("5s"));
        assert_eq!(check.timeout.as_deref(), Some("1s"));
        // Check attributes are kept as Meta, as in Registrator.
        assert_eq!(only(&m).meta["check_http"], "/health");
    }

    #[test]
    fn per_port_check_and_default_interval() {
        let c = with_ports(
            container(),
            &[("80/tcp", Some("8080")), ("443/tcp", Some("8443"))],
        );
        let m = map(
            &with_labels(
                c,
                &[
                    ("SERVICE_80_CHECK_HTTP", "/health"),
                    ("SERVICE_443_CHECK_TCP", "true"),
                ],
            ),
            &settings(),
        );
        assert!(m.errors.is_empty());
        let http = &m.registrations[0].service.checks[0];
        assert_eq!(http.http.as_deref(), Some("http://192.168.3.26:8080/health"));
        assert_eq!(http.interval.as_deref(), Some("10s"));
        let tcp = &m.registrations[1].service.checks[0];
        assert_eq!(tcp.tcp.as_deref(), Some("192.168.3.26:8443"));
    }

    #[test]
    fn https_ttl_and_grpc_checks() {
        let m = map(
            &with_env(
                container(),
                &[
                    "SERVICE_CHECK_HTTPS=/h",
                    "SERVICE_CHECK_TLS_SKIP_VERIFY=true",
                    "SERVICE_CHECK_HTTP_METHOD=HEAD",
                ],
            ),
            &settings(),
        );
        let check = &only(&m).checks[0];
        assert_eq!(check.http.as_deref(), Some("https://192.168.3.26:32768/h"));
        assert!(check.tls_skip_verify);
        assert_eq!(check.method.as_deref(), Some("HEAD"));

        let m = map(
            &with_env(
                container(),
                &["SERVICE_CHECK_TTL=30s", "SERVICE_CHECK_INTERVAL=5s"],
            ),
            &settings(),
        );
        let check = &only(&m).checks[0];
        assert_eq!(
            (check.ttl.as_deref(), check.interval.as_deref()),
            (Some("30s"), None)
        );

        let m = map(&with_env(container(), &["SERVICE_CHECK_GRPC=true"]), &settings());
        assert_eq!(only(&m).checks[0].grpc.as_deref(), Some("192.168.3.26:32768"));
        let m = map(
            &with_env(container(), &["SERVICE_CHECK_GRPC=health.v1"]),
            &settings(),
        );
        assert_eq!(
            only(&m).checks[0].grpc.as_deref(),
            Some("192.168.3.26:32768/health.v1")
        );
    }

    #[test]
    fn http_wins_when_several_check_types_are_set() {
        let m = map(
            &with_env(container(), &["SERVICE_CHECK_TCP=true", "SERVICE_CHECK_HTTP=/x"]),
            &settings(),
        );
        let check = &only(&m).checks[0];
        assert!(check.http.is_some() && check.tcp.is_none());
    }

    #[test]
    fn initial_status_and_deregister_after() {
        let c = with_env(
            container(),
            &[
                "SERVICE_CHECK_TCP=1",
                "SERVICE_CHECK_INITIAL_STATUS=passing",
                "SERVICE_CHECK_DEREGISTER_AFTER=10m",
            ],
        );
        let m = map(&c, &settings());
        let check = &only(&m).checks[0];
        assert_eq!(check.status.as_deref(), Some("passing"));
        assert_eq!(check.deregister_critical_service_after.as_deref(), Some("10m"));
    }

    #[test]
    fn ipv6_addresses_are_bracketed_in_checks() {
        let s = MappingSettings {
            forced_ip: Some("fd00::5".into()),
            ..settings()
        };
        let m = map(&with_env(container(), &["SERVICE_CHECK_HTTP=/h"]), &s);
        assert_eq!(
            only(&m).checks[0].http.as_deref(),
            Some("http://[fd00::5]:32768/h")
        );
    }

    fn single_error(m: &Mapping) -> &MappingError {
        assert_eq!(m.errors.len(), 1, "expected one error: {m:#?}");
        &m.errors[0]
    }

    #[test]
    fn a_bad_interval_skips_that_registration_naming_container_and_key() {
        let c = with_env(
            container(),
            &["SERVICE_CHECK_HTTP=/health", "SERVICE_CHECK_INTERVAL=often"],
        );
        let m = map(&c, &settings());
        assert!(m.registrations.is_empty());
        let e = single_error(&m);
        assert_eq!(e.key, "SERVICE_CHECK_INTERVAL");
        assert_eq!(
            e.problem,
            Problem::BadDuration {
                value: "often".into()
            }
        );
        let text = e.to_string();
        assert!(
            text.contains("container web1 (0123456789ab)") && text.contains("SERVICE_CHECK_INTERVAL"),
            "{text}"
        );
        assert!(text.contains("port 9090/tcp"), "{text}");
    }

    #[test]
    fn a_bad_per_port_value_skips_only_that_port() {
        let c = with_ports(
            container(),
            &[("80/tcp", Some("8080")), ("443/tcp", Some("8443"))],
        );
        let c = with_labels(
            c,
            &[
                ("SERVICE_443_CHECK_TIMEOUT", "1 second"),
                ("SERVICE_443_CHECK_TCP", "1"),
            ],
        );
        let m = map(&c, &settings());
        assert_eq!(m.registrations.len(), 1);
        assert_eq!(m.registrations[0].service.name, "web_go-80");
        let e = single_error(&m);
        assert_eq!(
            (e.key.as_str(), &e.skipped),
            ("SERVICE_443_CHECK_TIMEOUT", &Skipped::Port("443/tcp".into()))
        );
    }

    #[test]
    fn a_non_numeric_port_in_a_key_skips_the_container() {
        for key in ["SERVICE_80x_NAME", "SERVICE_99999_TAGS", "SERVICE_0_NAME"] {
            let m = map(&with_env(container(), &[&format!("{key}=web")]), &settings());
            assert!(m.registrations.is_empty(), "{key}");
            let e = single_error(&m);
            assert_eq!((e.key.as_str(), &e.skipped), (key, &Skipped::Container));
            assert!(matches!(e.problem, Problem::BadPortInKey { .. }));
        }
        // A key that does not start with a digit is a plain attribute.
        let m = map(&with_env(container(), &["SERVICE_X80_NAME=a"]), &settings());
        assert_eq!(only(&m).meta["x80_name"], "a");
    }

    #[test]
    fn unknown_and_command_check_types_are_refused() {
        let m = map(&with_env(container(), &["SERVICE_CHECK_FTP=/x"]), &settings());
        let e = single_error(&m);
        assert_eq!(
            (e.key.as_str(), &e.problem),
            ("SERVICE_CHECK_FTP", &Problem::UnknownCheck)
        );
        let m = map(
            &with_labels(container(), &[("SERVICE_9090_CHECK_SCRIPT", "curl x")]),
            &settings(),
        );
        assert_eq!(
            single_error(&m).problem,
            Problem::UnsupportedCheck {
                kind: "SCRIPT".into()
            }
        );
        let m = map(
            &with_env(container(), &["SERVICE_CHECK_CMD=/bin/true"]),
            &settings(),
        );
        assert!(matches!(
            single_error(&m).problem,
            Problem::UnsupportedCheck { .. }
        ));
    }

    #[test]
    fn other_bad_check_values() {
        let m = map(
            &with_env(container(), &["SERVICE_CHECK_HTTP=health"]),
            &settings(),
        );
        assert_eq!(
            single_error(&m).problem,
            Problem::BadPath {
                value: "health".into()
            }
        );
        let m = map(
            &with_env(container(), &["SERVICE_CHECK_TTL=forever"]),
            &settings(),
        );
        assert_eq!(single_error(&m).key, "SERVICE_CHECK_TTL");
        let m = map(
            &with_env(
                container(),
                &["SERVICE_CHECK_TCP=1", "SERVICE_CHECK_INITIAL_STATUS=ok"],
            ),
            &settings(),
        );
        assert_eq!(
            single_error(&m).problem,
            Problem::BadStatus { value: "ok".into() }
        );
        let m = map(
            &with_env(
                container(),
                &["SERVICE_CHECK_TCP=1", "SERVICE_CHECK_DEREGISTER_AFTER=1d"],
            ),
            &settings(),
        );
        assert_eq!(single_error(&m).key, "SERVICE_CHECK_DEREGISTER_AFTER");
    }

    #[test]
    fn an_interval_without_a_check_is_still_validated() {
        let m = map(&with_env(container(), &["SERVICE_CHECK_INTERVAL=x"]), &settings());
        assert_eq!(single_error(&m).key, "SERVICE_CHECK_INTERVAL");
        let m = map(
            &with_env(container(), &["SERVICE_CHECK_INTERVAL=15s"]),
            &settings(),
        );
        assert!(only(&m).checks.is_empty());
    }

    #[test]
    fn other_attributes_become_meta_and_invalid_keys_are_dropped_with_a_warning() {
        let c = with_env(container(), &["SERVICE_REGION=eu", "SERVICE_9090_WEIGHT=3"]);
        let c = with_labels(
            c,
            &[
                ("SERVICE_team.owner", "ops"),
                ("SERVICE_consul-x", "y"),
                ("SERVICE_BERTH-AGENT-ID", "forged"),
            ],
        );
        let m = map(&c, &settings());
        let s = only(&m);
        assert_eq!(s.meta["region"], "eu");
        assert_eq!(s.meta["weight"], "3");
        assert_eq!(s.meta[META_AGENT], "agent-1");
        assert!(!s.meta.contains_key("team.owner") && !s.meta.contains_key("consul-x"));
        assert_eq!(m.warnings.len(), 3, "{:?}", m.warnings);
    }

    #[test]
    fn meta_is_capped_at_consuls_limit() {
        let env: Vec<String> = (0..70).map(|i| format!("SERVICE_K{i:02}=v")).collect();
        let c = with_env(container(), &env.iter().map(String::as_str).collect::<Vec<_>>());
        let m = map(&c, &settings());
        assert_eq!(only(&m).meta.len(), 64);
        assert_eq!(m.warnings.len(), 9);
    }

    #[test]
    fn only_running_containers_are_registered() {
        for (state, registered) in [
            (RunState::Running, true),
            (RunState::Paused, false),
            (RunState::Restarting, false),
            (RunState::Exited { code: 1 }, false),
            (RunState::Other("created".into()), false),
        ] {
            let c = ContainerInfo {
                state: state.clone(),
                ..container()
            };
            assert_eq!(
                map(&c, &settings()).registrations.len(),
                usize::from(registered),
                "{state:?}"
            );
        }
    }

    #[test]
    fn on_success_retains_containers_that_failed() {
        for (code, kept) in [(0, false), (1, true), (2, true), (137, false), (143, false)] {
            let state = RunState::Exited { code };
            assert_eq!(
                retained_exit(&state, DeregisterMode::OnSuccess).is_some(),
                kept,
                "exit code {code}"
            );
            assert_eq!(retained_exit(&state, DeregisterMode::Always), None);
            // Retained, not mapped: a stopped container publishes no ports.
            let s = MappingSettings {
                deregister: DeregisterMode::OnSuccess,
                ..settings()
            };
            assert!(map(&ContainerInfo { state, ..container() }, &s)
                .registrations
                .is_empty());
        }
        assert_eq!(retained_exit(&RunState::Running, DeregisterMode::OnSuccess), None);
    }

    fn healthy(status: HealthStatus) -> Option<DockerHealth> {
        Some(DockerHealth {
            status,
            failing_streak: 3,
            last_output: "probe said no\n".into(),
        })
    }

    #[test]
    fn docker_health_is_mirrored_to_a_ttl_check() {
        let c = ContainerInfo {
            health: healthy(HealthStatus::Healthy),
            ..container()
        };
        let m = map(&c, &settings());
        let s = only(&m);
        let check = &s.checks[0];
        assert_eq!(check.check_id, "service:dockerhost:web1:9090:docker-health");
        assert_eq!(check.ttl.as_deref(), Some("90s"));
        assert_eq!(check.status.as_deref(), Some("passing"));
        let driven = &m.registrations[0].driven[0];
        assert_eq!(
            (driven.check_id.as_str(), driven.status),
            ("service:dockerhost:web1:9090:docker-health", "passing")
        );

        for status in [HealthStatus::Starting, HealthStatus::Unhealthy] {
            let c = ContainerInfo {
                health: healthy(status),
                ..container()
            };
            let m = map(&c, &settings());
            assert_eq!(m.registrations[0].driven[0].status, "critical", "{status:?}");
        }
        let c = ContainerInfo {
            health: healthy(HealthStatus::Unhealthy),
            ..container()
        };
        assert_eq!(
            map(&c, &settings()).registrations[0].driven[0].output,
            "Docker health: unhealthy (failing streak 3): probe said no"
        );
    }

    #[test]
    fn health_changes_do_not_change_the_fingerprint() {
        let a = map(
            &ContainerInfo {
                health: healthy(HealthStatus::Healthy),
                ..container()
            },
            &settings(),
        );
        let b = map(
            &ContainerInfo {
                health: healthy(HealthStatus::Unhealthy),
                ..container()
            },
            &settings(),
        );
        assert_eq!(
            a.registrations[0].service.meta[META_SPEC],
            b.registrations[0].service.meta[META_SPEC]
        );
        let c = map(&with_env(container(), &["SERVICE_TAGS=x"]), &settings());
        assert_ne!(
            a.registrations[0].service.meta[META_SPEC],
            c.registrations[0].service.meta[META_SPEC]
        );
    }

    #[test]
    fn a_service_check_and_the_health_mirror_coexist() {
        let c = ContainerInfo {
            health: healthy(HealthStatus::Healthy),
            ..with_env(container(), &["SERVICE_CHECK_TCP=1"])
        };
        let m = map(&c, &settings());
        let ids: Vec<_> = only(&m).checks.iter().map(|c| c.check_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "service:dockerhost:web1:9090",
                "service:dockerhost:web1:9090:docker-health"
            ]
        );
    }

    #[test]
    fn agent_ttl_check_on_every_service() {
        let s = MappingSettings {
            agent_ttl: Some(Duration::from_secs(30)),
            ..settings()
        };
        let m = map(&container(), &s);
        let check = &only(&m).checks[0];
        assert_eq!(
            (check.check_id.as_str(), check.ttl.as_deref()),
            ("service:dockerhost:web1:9090:agent-ttl", Some("30s"))
        );
        assert_eq!(m.registrations[0].driven[0].status, "passing");
    }

    fn host_network() -> ContainerInfo {
        ContainerInfo {
            network_mode: "host".into(),
            exposed_ports: vec!["8080/tcp".into()],
            ports: BTreeMap::new(),
            networks: BTreeMap::from([("host".to_string(), String::new())]),
            ..container()
        }
    }

    #[test]
    fn host_network_registers_exposed_ports_at_the_host_address() {
        let m = map(&host_network(), &settings());
        let s = only(&m);
        assert_eq!((s.address.as_str(), s.port), ("192.168.3.26", 8080));
        let m = map(
            &host_network(),
            &MappingSettings {
                internal: true,
                ..settings()
            },
        );
        assert_eq!((only(&m).address.as_str(), only(&m).port), ("192.168.3.26", 8080));
        let m = map(
            &host_network(),
            &MappingSettings {
                forced_ip: None,
                ..settings()
            },
        );
        assert_eq!(only(&m).address, "10.1.1.1");
    }

    fn multi_network() -> ContainerInfo {
        ContainerInfo {
            network_mode: "shop_default".into(),
            networks: BTreeMap::from([
                ("backend".to_string(), "10.20.0.5".to_string()),
                ("bridge".to_string(), "172.17.0.9".to_string()),
                ("shop_default".to_string(), "10.30.0.7".to_string()),
            ]),
            ..container()
        }
    }

    #[test]
    fn internal_ip_on_several_networks() {
        let internal = MappingSettings {
            internal: true,
            ..settings()
        };
        // The network the container was created on.
        assert_eq!(only(&map(&multi_network(), &internal)).address, "10.30.0.7");
        // The label names another.
        let c = with_labels(multi_network(), &[(NETWORK_LABEL, "backend")]);
        assert_eq!(only(&map(&c, &internal)).address, "10.20.0.5");
        // Default bridge mode.
        let c = ContainerInfo {
            network_mode: "default".into(),
            ..multi_network()
        };
        assert_eq!(only(&map(&c, &internal)).address, "172.17.0.9");
        // Primary network gone (disconnected): bridge, then the first by name.
        let mut c = multi_network();
        c.networks.remove("shop_default");
        assert_eq!(only(&map(&c, &internal)).address, "172.17.0.9");
        c.networks.remove("bridge");
        assert_eq!(only(&map(&c, &internal)).address, "10.20.0.5");
        // Without -internal, networks do not matter.
        assert_eq!(only(&map(&multi_network(), &settings())).address, "192.168.3.26");
    }

    #[test]
    fn a_network_label_naming_another_network_is_an_error() {
        let internal = MappingSettings {
            internal: true,
            ..settings()
        };
        let c = with_labels(multi_network(), &[(NETWORK_LABEL, "frontend")]);
        let m = map(&c, &internal);
        let e = single_error(&m);
        assert_eq!(e.key, NETWORK_LABEL);
        assert!(e.to_string().contains("backend, bridge, shop_default"), "{e}");
    }

    #[test]
    fn shared_network_containers_register_only_internally() {
        let c = ContainerInfo {
            network_mode: "container:abc".into(),
            shared_ip: Some("172.17.0.3".into()),
            ..container()
        };
        assert!(map(&c, &settings()).registrations.is_empty());
        let m = map(
            &c,
            &MappingSettings {
                internal: true,
                ..settings()
            },
        );
        assert_eq!((only(&m).address.as_str(), only(&m).port), ("172.17.0.3", 9090));
    }

    #[test]
    fn duplicate_ids_keep_the_first_container_in_name_order() {
        let a = with_env(
            ContainerInfo {
                name: "a".into(),
                id: "a".repeat(64),
                ..container()
            },
            &["SERVICE_ID=same"],
        );
        let b = with_env(
            ContainerInfo {
                name: "b".into(),
                id: "b".repeat(64),
                ..container()
            },
            &["SERVICE_ID=same"],
        );
        let d = desired(&[b, a], &settings());
        assert_eq!(d.registrations.len(), 1);
        assert_eq!(d.registrations[0].container_name, "a");
        assert_eq!(d.errors.len(), 1);
        assert_eq!(d.errors[0].key, "SERVICE_ID");
        assert_eq!(d.errors[0].container, "b");
        assert!(matches!(&d.errors[0].problem, Problem::DuplicateId { other, .. } if other == "a"));
    }

    #[test]
    fn one_bad_container_does_not_affect_the_others() {
        let good = ContainerInfo {
            name: "good".into(),
            ..container()
        };
        let bad = with_env(
            ContainerInfo {
                name: "bad".into(),
                id: "f".repeat(64),
                ..container()
            },
            &["SERVICE_CHECK_INTERVAL=x"],
        );
        let d = desired(&[bad, good], &settings());
        assert_eq!(d.registrations.len(), 1);
        assert_eq!(d.registrations[0].container_name, "good");
        assert_eq!(d.errors.len(), 1);
    }

    #[test]
    fn mapping_is_deterministic() {
        let c = with_ports(
            with_env(container(), &["SERVICE_TAGS=a", "SERVICE_X=1"]),
            &[("80/tcp", Some("1")), ("81/tcp", Some("2"))],
        );
        assert_eq!(map(&c, &settings()), map(&c, &settings()));
    }
}
