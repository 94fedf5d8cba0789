//! The command line: Registrator's own flags, as Registrator's users write them, turned into
//! [`Settings`].
//!
//! Registrator is a Go program, so its users write single-dash long flags
//! (`-resync=1000 -retry-attempts=-1 -ip="192.168.3.26" consul://192.168.3.26:8500`), booleans bare
//! (`-internal`) or with a value (`-internal=false`). clap does not parse single-dash long flags, so
//! [`normalise`] rewrites them to the double-dash form first (`-resync=1000` → `--resync=1000`);
//! the conventional `--resync 1000` form works as is. Unknown flags are refused here, by the name
//! the operator typed, before clap sees them.
//!
//! The registry URI says where Consul is (`consul://` over HTTP, `consul-tls://` over HTTPS, as in
//! Registrator); the standard `CONSUL_*` variables, and Registrator's `CONSUL_TLSCERT` and
//! `CONSUL_TLSKEY`, say how to reach it ([`consul_config`]).
//!
//! This module only parses and validates; it does not resolve host names, read files or touch the
//! network.

use std::path::PathBuf;
use std::time::Duration;

use berth_consul::{config::env as consul_env, parse_go_bool};
use clap::{ArgAction, CommandFactory, Parser, ValueEnum};

/// Why the command line was refused. Each variant names what the operator typed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    #[error("unknown flag {flag:?} (run `berth-agent --help` for the list)")]
    UnknownFlag { flag: String },
    #[error(
        "unsupported registry {uri:?}: berth-agent registers in Consul only; give the registry as \
         consul://HOST:PORT or consul-tls://HOST:PORT, for example consul://127.0.0.1:8500"
    )]
    UnsupportedRegistry { uri: String },
    #[error("invalid registry {uri:?}: {reason}")]
    InvalidRegistry { uri: String, reason: String },
    #[error("-ttl and -ttl-refresh must be given together (got -ttl={ttl} -ttl-refresh={refresh})")]
    TtlWithoutRefresh { ttl: u64, refresh: u64 },
    #[error("-ttl ({ttl}s) must be greater than -ttl-refresh ({refresh}s)")]
    TtlNotAboveRefresh { ttl: u64, refresh: u64 },
    #[error("-retry-attempts={0}: must be -1 (retry forever) or a count of 0 or more")]
    RetryAttempts(i64),
    #[error("-tags={0:?}: Go templates in -tags are not supported by berth-agent; give literal tags")]
    TagTemplate(String),
    #[error("-health-ttl={0}: must be at least 3 seconds")]
    HealthTtl(u64),
    #[error("-{flag}={value:?}: must not be empty")]
    Empty { flag: &'static str, value: String },
    /// A `CONSUL_*` variable with an unusable value.
    #[error(transparent)]
    Consul(#[from] berth_consul::Error),
    #[error(transparent)]
    Clap(#[from] clap::Error),
}

/// When a container that stopped loses its registrations (Registrator's `-deregister`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum DeregisterMode {
    /// Whenever the container stops running.
    Always,
    /// Only when it exited with code 0 (or was killed by a signal); a container that failed keeps
    /// its registrations (with its Docker health check, if any, critical).
    OnSuccess,
}

const ABOUT: &str = "Keeps this Docker host's containers registered in Consul: a reconciling, drop-in \
replacement for gliderlabs/registrator.";

const AFTER_HELP: &str = "\
Flags may be written Registrator's way (-resync=1000, -ip=\"10.0.0.5\", -internal) or the
conventional way (--resync 1000, --ip 10.0.0.5, --internal). Every flag, and the registry URI, can
also be set in the environment, shown as [env: BERTH_AGENT_...] above (booleans as true/false);
the command line wins. -log-level and -log-format read BERTH_LOG_LEVEL and BERTH_LOG_FORMAT, as
the other Berth binaries do, and RUST_LOG, when set, wins over -log-level.

Registry: consul://HOST:PORT (the local Consul agent's HTTP API; consul:// alone means
127.0.0.1:8500), or consul-tls://HOST:PORT for its HTTPS API (consul-tls:// alone means
127.0.0.1:8501).
Consul environment: CONSUL_HTTP_TOKEN or CONSUL_HTTP_TOKEN_FILE (ACL token); for consul-tls://,
CONSUL_CACERT (PEM file of the CA that signed Consul's certificate; default: the system's CAs),
CONSUL_TLSCERT and CONSUL_TLSKEY (client certificate and key, for a Consul with verify_incoming;
CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY are accepted too), CONSUL_HTTP_SSL_VERIFY=false (do not
verify Consul's certificate), CONSUL_TLS_SERVER_NAME; CONSUL_HTTP_SSL=true makes consul:// use
HTTPS as well.
Docker Engine: DOCKER_HOST (unix:///path or tcp://host:port), default unix:///var/run/docker.sock.

Containers are described by env vars or labels: SERVICE_NAME, SERVICE_TAGS, SERVICE_ID,
SERVICE_IGNORE, SERVICE_<port>_NAME|TAGS|ID|IGNORE, SERVICE_CHECK_HTTP|HTTPS|TCP|TTL|GRPC,
SERVICE_CHECK_INTERVAL|TIMEOUT (and SERVICE_<port>_CHECK_...). A Docker HEALTHCHECK is mirrored to
a Consul check. See agent/README.md.

Example (the article's command line):
  berth-agent -resync=1000 -retry-attempts=-1 -retry-interval=2000 -ip=\"192.168.3.26\" consul://192.168.3.26:8500";

/// The raw command line, as clap sees it after [`normalise`].
#[derive(Debug, Parser)]
#[command(name = "berth-agent", version, about = ABOUT, after_help = AFTER_HELP)]
struct Args {
    /// Address to register for published ports (default: a specific host IP the port is bound
    /// to, else this host's name resolved)
    #[arg(long = "ip", value_name = "ADDRESS", env = "BERTH_AGENT_IP")]
    ip: Option<String>,

    /// Register the container's own IP and exposed port instead of the published host port
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_value = "false",
          default_missing_value = "true", value_parser = parse_go_bool, action = ArgAction::Set,
          env = "BERTH_AGENT_INTERNAL")]
    internal: bool,

    /// Only register containers (ports) that set SERVICE_NAME (or SERVICE_<port>_NAME)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_value = "false",
          default_missing_value = "true", value_parser = parse_go_bool, action = ArgAction::Set,
          env = "BERTH_AGENT_EXPLICIT")]
    explicit: bool,

    /// Only register containers that have a SERVICE_REGISTER label (or env var)
    #[arg(long = "require-label", value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", value_parser = parse_go_bool,
          action = ArgAction::Set, env = "BERTH_AGENT_REQUIRE_LABEL")]
    require_label: bool,

    /// Tags appended to every registered service, comma separated
    #[arg(long, value_name = "TAGS", env = "BERTH_AGENT_TAGS")]
    tags: Option<String>,

    /// Reconcile with Docker and Consul every SECONDS even without events (0 = only on events)
    #[arg(long, value_name = "SECONDS", default_value_t = 0, env = "BERTH_AGENT_RESYNC")]
    resync: u64,

    /// Attempts to reach Docker or Consul before giving up and exiting (-1 = retry forever)
    #[arg(
        long = "retry-attempts",
        value_name = "N",
        default_value_t = 0,
        allow_negative_numbers = true,
        env = "BERTH_AGENT_RETRY_ATTEMPTS"
    )]
    retry_attempts: i64,

    /// Pause between attempts, in milliseconds
    #[arg(
        long = "retry-interval",
        value_name = "MS",
        default_value_t = 2000,
        env = "BERTH_AGENT_RETRY_INTERVAL"
    )]
    retry_interval: u64,

    /// Also remove services that look like Registrator's for this host (ID "<hostname>:...")
    /// whose container is gone, not only those marked as this agent's
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_value = "false",
          default_missing_value = "true", value_parser = parse_go_bool, action = ArgAction::Set,
          env = "BERTH_AGENT_CLEANUP")]
    cleanup: bool,

    /// When a stopped container's services are removed: always, or on-success (exit code 0 only)
    #[arg(
        long,
        value_enum,
        value_name = "MODE",
        default_value = "always",
        env = "BERTH_AGENT_DEREGISTER"
    )]
    deregister: DeregisterMode,

    /// Give every service a TTL check of SECONDS that this agent keeps passing: if the agent
    /// dies, its services go critical (0 = none; needs -ttl-refresh)
    #[arg(long, value_name = "SECONDS", default_value_t = 0, env = "BERTH_AGENT_TTL")]
    ttl: u64,

    /// How often the -ttl check is refreshed, in seconds (less than -ttl)
    #[arg(
        long = "ttl-refresh",
        value_name = "SECONDS",
        default_value_t = 0,
        env = "BERTH_AGENT_TTL_REFRESH"
    )]
    ttl_refresh: u64,

    /// Register the IP address found in this container label (a trailing /prefix is dropped)
    #[arg(
        long = "useIpFromLabel",
        alias = "use-ip-from-label",
        value_name = "LABEL",
        env = "BERTH_AGENT_USE_IP_FROM_LABEL"
    )]
    use_ip_from_label: Option<String>,

    /// [berth] Identity of this agent, stored in the Meta of every service it registers (default:
    /// the host name); it only ever removes services carrying its own identity
    #[arg(long = "agent-id", value_name = "ID", env = "BERTH_AGENT_ID")]
    agent_id: Option<String>,

    /// [berth] Host name used in service IDs "<hostname>:<container>:<port>" (default: this
    /// host's name)
    #[arg(long, value_name = "NAME", env = "BERTH_AGENT_HOSTNAME")]
    hostname: Option<String>,

    /// [berth] TTL of the Consul check mirroring a container's Docker HEALTHCHECK, in seconds; the
    /// agent refreshes it every third of that, so it goes critical only if the agent is gone
    #[arg(
        long = "health-ttl",
        value_name = "SECONDS",
        default_value_t = 90,
        env = "BERTH_AGENT_HEALTH_TTL"
    )]
    health_ttl: u64,

    /// Where to register: consul://HOST:PORT, or consul-tls://HOST:PORT for HTTPS
    #[arg(value_name = "REGISTRY_URI", env = "BERTH_AGENT_REGISTRY")]
    registry: String,

    #[command(flatten)]
    log: berth_support::logging::LogArgs,
}

/// Everything the agent needs from its command line and environment, validated.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    /// How to reach the Consul agent: the registry URI's address (`http://host:port` or
    /// `https://host:port`), ACL token and TLS settings from the environment.
    pub consul: berth_consul::Config,
    pub ip: Option<String>,
    pub internal: bool,
    pub explicit: bool,
    pub require_label: bool,
    pub tags: Vec<String>,
    pub resync: Option<Duration>,
    pub retry: RetryPolicy,
    pub cleanup: bool,
    pub deregister: DeregisterMode,
    /// `-ttl` and `-ttl-refresh`, when given.
    pub ttl: Option<(Duration, Duration)>,
    pub use_ip_from_label: Option<String>,
    pub agent_id: Option<String>,
    pub hostname: Option<String>,
    pub health_ttl: Duration,
    /// `-log-level` and `-log-format`.
    pub log: berth_support::logging::LogArgs,
}

/// How often to try again when Docker or Consul cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    /// Retries after the first failed attempt; `None` retries forever.
    pub attempts: Option<u64>,
    pub interval: Duration,
}

/// Parses the process's command line (`args` includes the program name) and environment lookup.
pub(crate) fn parse<I, S>(args: I, env: impl Fn(&str) -> Option<String>) -> Result<Settings, CliError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let args = normalise(args.into_iter().map(Into::into).collect())?;
    let raw = Args::try_parse_from(args)?;
    settings(raw, env)
}

/// Rewrites Go-style single-dash long flags to clap's double-dash form, strips the quotes a
/// `-flag="value"` keeps when no shell removed them, and refuses flags this program does not have,
/// naming them as typed. Arguments after `--` are left alone.
fn normalise(args: Vec<String>) -> Result<Vec<String>, CliError> {
    let command = Args::command();
    let mut known: Vec<String> = vec!["help".into(), "version".into()];
    for arg in command.get_arguments() {
        if let Some(long) = arg.get_long() {
            known.push(long.to_string());
        }
        if let Some(aliases) = arg.get_all_aliases() {
            known.extend(aliases.into_iter().map(str::to_string));
        }
    }
    let mut out = Vec::with_capacity(args.len());
    let mut rest = false;
    for (i, arg) in args.into_iter().enumerate() {
        if i == 0 || rest {
            out.push(arg);
            continue;
        }
        if arg == "--" {
            rest = true;
            out.push(arg);
            continue;
        }
        let body = if let Some(body) = arg.strip_prefix("--") {
            body
        } else if let Some(body) = arg.strip_prefix('-') {
            // "-1" (a negative value) and "-h"/"-V" (clap's short flags) are not long flags.
            if body.len() < 2 || !body.starts_with(|c: char| c.is_ascii_alphabetic()) {
                out.push(arg);
                continue;
            }
            body
        } else {
            out.push(arg);
            continue;
        };
        let (name, value) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (body, None),
        };
        if !known.iter().any(|k| k == name) {
            return Err(CliError::UnknownFlag { flag: arg.clone() });
        }
        out.push(match value {
            Some(value) => format!("--{name}={}", unquote(value)),
            None => format!("--{name}"),
        });
    }
    Ok(out)
}

fn unquote(value: &str) -> &str {
    for quote in ['"', '\''] {
        if value.len() >= 2 && value.starts_with(quote) && value.ends_with(quote) {
            return &value[1..value.len() - 1];
        }
    }
    value
}

fn settings(raw: Args, env: impl Fn(&str) -> Option<String>) -> Result<Settings, CliError> {
    let consul = consul_config(&raw.registry, &env)?;
    let retry_attempts = match raw.retry_attempts {
        -1 => None,
        n if n >= 0 => Some(n.unsigned_abs()),
        n => return Err(CliError::RetryAttempts(n)),
    };
    let ttl = match (raw.ttl, raw.ttl_refresh) {
        (0, 0) => None,
        (ttl, refresh) if ttl == 0 || refresh == 0 => {
            return Err(CliError::TtlWithoutRefresh { ttl, refresh })
        }
        (ttl, refresh) if ttl <= refresh => return Err(CliError::TtlNotAboveRefresh { ttl, refresh }),
        (ttl, refresh) => Some((Duration::from_secs(ttl), Duration::from_secs(refresh))),
    };
    let tags = raw.tags.unwrap_or_default();
    if tags.contains("{{") {
        return Err(CliError::TagTemplate(tags));
    }
    if raw.health_ttl < 3 {
        return Err(CliError::HealthTtl(raw.health_ttl));
    }
    let non_empty = |flag: &'static str, value: Option<String>| -> Result<Option<String>, CliError> {
        match value {
            Some(v) if v.trim().is_empty() => Err(CliError::Empty { flag, value: v }),
            other => Ok(other),
        }
    };
    Ok(Settings {
        consul,
        // Registrator treats -ip="" as unset.
        ip: raw
            .ip
            .filter(|ip| !ip.trim().is_empty())
            .map(|ip| ip.trim().to_string()),
        internal: raw.internal,
        explicit: raw.explicit,
        require_label: raw.require_label,
        tags: split_tags(&tags),
        resync: (raw.resync > 0).then(|| Duration::from_secs(raw.resync)),
        retry: RetryPolicy {
            attempts: retry_attempts,
            interval: Duration::from_millis(raw.retry_interval),
        },
        cleanup: raw.cleanup,
        deregister: raw.deregister,
        ttl,
        use_ip_from_label: non_empty("useIpFromLabel", raw.use_ip_from_label)?,
        agent_id: non_empty("agent-id", raw.agent_id)?,
        hostname: non_empty("hostname", raw.hostname)?,
        health_ttl: Duration::from_secs(raw.health_ttl),
        log: raw.log,
    })
}

/// Comma-separated tags, trimmed, without empty entries.
pub(crate) fn split_tags(tags: &str) -> Vec<String> {
    tags.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// Registrator's names for the client certificate and key of `consul-tls://`.
const REGISTRATOR_TLSCERT: &str = "CONSUL_TLSCERT";
const REGISTRATOR_TLSKEY: &str = "CONSUL_TLSKEY";

/// How to reach Consul: the registry URI's address, and the standard `CONSUL_*` variables
/// (except `CONSUL_HTTP_ADDR`: the URI says where). Registrator's `CONSUL_TLSCERT` and
/// `CONSUL_TLSKEY` win over `CONSUL_CLIENT_CERT` and `CONSUL_CLIENT_KEY`, as they do in Registrator.
fn consul_config(uri: &str, env: &impl Fn(&str) -> Option<String>) -> Result<berth_consul::Config, CliError> {
    let mut config = berth_consul::Config::from_lookup(|name| {
        if name == consul_env::HTTP_ADDR {
            None
        } else {
            env(name)
        }
    })?;
    let (tls, host_port) = registry_address(uri)?;
    let scheme = if tls || config.https { "https" } else { "http" };
    config.addresses = vec![format!("{scheme}://{host_port}")];
    let path = |name: &str| env(name).filter(|v| !v.trim().is_empty()).map(PathBuf::from);
    if let Some(cert) = path(REGISTRATOR_TLSCERT) {
        config.tls.client_cert = Some(cert);
    }
    if let Some(key) = path(REGISTRATOR_TLSKEY) {
        config.tls.client_key = Some(key);
    }
    Ok(config)
}

/// `consul://host:port` → (false, `host:port`); `consul-tls://host:port` → (true, `host:port`).
/// `consul://` alone is the local agent on 8500, and a missing port is 8500, as in Registrator;
/// for `consul-tls://` both are 8501, Consul's conventional HTTPS port.
fn registry_address(uri: &str) -> Result<(bool, String), CliError> {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Err(CliError::InvalidRegistry {
            uri: uri.to_string(),
            reason: "expected consul://HOST:PORT or consul-tls://HOST:PORT".into(),
        });
    };
    let (tls, default_port) = match scheme {
        "consul" => (false, 8500),
        "consul-tls" => (true, 8501),
        _ => return Err(CliError::UnsupportedRegistry { uri: uri.to_string() }),
    };
    let rest = rest.trim_end_matches('/');
    if rest.contains('/') || rest.contains('?') || rest.contains('@') {
        return Err(CliError::InvalidRegistry {
            uri: uri.to_string(),
            reason: format!("expected only HOST:PORT after {scheme}://"),
        });
    }
    let default_address = format!("127.0.0.1:{default_port}");
    let rest = if rest.is_empty() {
        default_address.as_str()
    } else {
        rest
    };
    let parsed = url::Url::parse(&format!("http://{rest}")).map_err(|e| CliError::InvalidRegistry {
        uri: uri.to_string(),
        reason: e.to_string(),
    })?;
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| CliError::InvalidRegistry {
            uri: uri.to_string(),
            reason: "no host".into(),
        })?;
    // The http URL hides an explicit :80 and the https one an explicit :443: ask both.
    let port = parsed
        .port()
        .or_else(|| url::Url::parse(&format!("https://{rest}")).ok()?.port())
        .unwrap_or(default_port);
    Ok((tls, format!("{host}:{port}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_args(args: &[&str]) -> Result<Settings, CliError> {
        parse_with_env(args, &[])
    }

    fn parse_with_env(args: &[&str], vars: &[(&str, &str)]) -> Result<Settings, CliError> {
        let mut all = vec!["berth-agent"];
        all.extend_from_slice(args);
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        parse(all, move |name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    /// The one Consul address the settings hold.
    fn address(s: &Settings) -> &str {
        assert_eq!(s.consul.addresses.len(), 1, "{:?}", s.consul);
        &s.consul.addresses[0]
    }

    #[test]
    fn accepts_the_articles_command_line() {
        let s = parse_args(&[
            "-resync=1000",
            "-retry-attempts=-1",
            "-retry-interval=2000",
            "-ip=\"192.168.3.26\"",
            "consul://192.168.3.26:8500",
        ])
        .expect("valid");
        assert_eq!(address(&s), "http://192.168.3.26:8500");
        assert_eq!(s.resync, Some(Duration::from_secs(1000)));
        assert_eq!(
            s.retry,
            RetryPolicy {
                attempts: None,
                interval: Duration::from_millis(2000)
            }
        );
        assert_eq!(s.ip.as_deref(), Some("192.168.3.26"));
        assert!(!s.internal && !s.explicit && !s.cleanup);
        assert_eq!(s.deregister, DeregisterMode::Always);
    }

    #[test]
    fn accepts_separate_values_double_dashes_and_bare_booleans() {
        let s = parse_args(&[
            "--resync",
            "5",
            "-retry-attempts",
            "-1",
            "-internal",
            "--explicit",
            "-cleanup=true",
            "-tags",
            "a, b,,c",
            "-deregister",
            "on-success",
            "-useIpFromLabel=ip",
            "consul://consul",
        ])
        .expect("valid");
        assert_eq!(s.resync, Some(Duration::from_secs(5)));
        assert_eq!(s.retry.attempts, None);
        assert!(s.internal && s.explicit && s.cleanup);
        assert_eq!(s.tags, ["a", "b", "c"]);
        assert_eq!(s.deregister, DeregisterMode::OnSuccess);
        assert_eq!(s.use_ip_from_label.as_deref(), Some("ip"));
        assert_eq!(address(&s), "http://consul:8500");
    }

    #[test]
    fn go_booleans_take_a_value_only_with_equals() {
        let s = parse_args(&["-internal=false", "-explicit=1", "consul://"]).expect("valid");
        assert!(!s.internal && s.explicit);
        // The URI after a bare boolean is the URI, not the boolean's value.
        let s = parse_args(&["-internal", "consul://h:1"]).expect("valid");
        assert!(s.internal);
        assert_eq!(address(&s), "http://h:1");
        assert!(parse_args(&["-internal=maybe", "consul://"]).is_err());
    }

    #[test]
    fn defaults_are_registrators() {
        let s = parse_args(&["consul://"]).expect("valid");
        assert_eq!(address(&s), "http://127.0.0.1:8500");
        assert_eq!(s.resync, None);
        assert_eq!(
            s.retry,
            RetryPolicy {
                attempts: Some(0),
                interval: Duration::from_millis(2000)
            }
        );
        assert_eq!(s.ttl, None);
        assert_eq!(s.ip, None);
        assert_eq!(s.health_ttl, Duration::from_secs(90));
    }

    #[test]
    fn unknown_flags_are_named_as_typed() {
        let err = parse_args(&["-resync=1", "-bogus=3", "consul://"]).expect_err("unknown flag");
        assert_eq!(
            err.to_string(),
            "unknown flag \"-bogus=3\" (run `berth-agent --help` for the list)"
        );
        let err = parse_args(&["--nope", "consul://"]).expect_err("unknown flag");
        assert!(err.to_string().contains("\"--nope\""), "{err}");
    }

    #[test]
    fn only_consul_registries_are_accepted() {
        for uri in ["etcd://127.0.0.1:2379", "consul-unix:///var/run/consul.sock"] {
            let err = parse_args(&[uri]).expect_err("unsupported");
            assert!(
                matches!(err, CliError::UnsupportedRegistry { .. }),
                "{uri}: {err}"
            );
            assert!(err.to_string().contains(uri), "{err}");
        }
        assert!(matches!(
            parse_args(&["127.0.0.1:8500"]),
            Err(CliError::InvalidRegistry { .. })
        ));
        assert!(matches!(
            parse_args(&["consul://h:8500/path"]),
            Err(CliError::InvalidRegistry { .. })
        ));
        assert!(matches!(
            parse_args(&["consul://h:notaport"]),
            Err(CliError::InvalidRegistry { .. })
        ));
        assert_eq!(
            address(&parse_args(&["consul://[::1]:8500"]).expect("v6")),
            "http://[::1]:8500"
        );
        assert_eq!(
            address(&parse_args(&["consul://h:80"]).expect("port 80")),
            "http://h:80"
        );
        assert_eq!(
            address(&parse_args(&["consul://h:443"]).expect("port 443")),
            "http://h:443"
        );
        assert!(parse_args(&[]).is_err(), "the registry is required");
    }

    #[test]
    fn ttl_needs_refresh_and_must_exceed_it() {
        assert!(matches!(
            parse_args(&["-ttl=30", "consul://"]),
            Err(CliError::TtlWithoutRefresh { .. })
        ));
        assert!(matches!(
            parse_args(&["-ttl=30", "-ttl-refresh=30", "consul://"]),
            Err(CliError::TtlNotAboveRefresh { .. })
        ));
        let s = parse_args(&["-ttl=30", "-ttl-refresh=10", "consul://"]).expect("valid");
        assert_eq!(s.ttl, Some((Duration::from_secs(30), Duration::from_secs(10))));
    }

    #[test]
    fn refuses_bad_values() {
        assert!(matches!(
            parse_args(&["-retry-attempts=-2", "consul://"]),
            Err(CliError::RetryAttempts(-2))
        ));
        assert!(matches!(
            parse_args(&["-tags={{.Name}}", "consul://"]),
            Err(CliError::TagTemplate(_))
        ));
        assert!(parse_args(&["-deregister=sometimes", "consul://"]).is_err());
        assert!(parse_args(&["-resync=soon", "consul://"]).is_err());
        assert!(matches!(
            parse_args(&["-health-ttl=1", "consul://"]),
            Err(CliError::HealthTtl(1))
        ));
    }

    #[test]
    fn reads_the_consul_token_from_the_environment() {
        let s = parse(["berth-agent", "consul://"], |k| {
            (k == "CONSUL_HTTP_TOKEN").then(|| "secret".to_string())
        })
        .expect("valid");
        assert_eq!(s.consul.token.as_deref(), Some("secret"));
        let s = parse_with_env(&["consul://"], &[("CONSUL_HTTP_TOKEN_FILE", "/run/token")]).expect("valid");
        assert_eq!(s.consul.token_file, Some(PathBuf::from("/run/token")));
    }

    #[test]
    fn consul_tls_is_registrators_https_registry() {
        let s = parse_args(&["consul-tls://consul.example:8501"]).expect("valid");
        assert_eq!(address(&s), "https://consul.example:8501");
        assert!(s.consul.tls.verify);
        assert_eq!(
            address(&parse_args(&["consul-tls://"]).expect("valid")),
            "https://127.0.0.1:8501"
        );
        assert_eq!(
            address(&parse_args(&["consul-tls://h"]).expect("valid")),
            "https://h:8501"
        );
        assert!(matches!(
            parse_args(&["consul-tls://h:8501/v1"]),
            Err(CliError::InvalidRegistry { .. })
        ));
    }

    #[test]
    fn reads_registrators_and_the_standard_tls_variables() {
        let s = parse_with_env(
            &["consul-tls://127.0.0.1:8501"],
            &[
                ("CONSUL_CACERT", "/tls/ca.pem"),
                ("CONSUL_TLSCERT", "/tls/agent.pem"),
                ("CONSUL_TLSKEY", "/tls/agent-key.pem"),
                ("CONSUL_HTTP_SSL_VERIFY", "0"),
                // The registry URI says where Consul is.
                ("CONSUL_HTTP_ADDR", "elsewhere:8500"),
            ],
        )
        .expect("valid");
        assert_eq!(address(&s), "https://127.0.0.1:8501");
        assert_eq!(s.consul.tls.ca_cert, Some(PathBuf::from("/tls/ca.pem")));
        assert_eq!(s.consul.tls.client_cert, Some(PathBuf::from("/tls/agent.pem")));
        assert_eq!(s.consul.tls.client_key, Some(PathBuf::from("/tls/agent-key.pem")));
        assert!(!s.consul.tls.verify);

        // The standard names work too; Registrator's win when both are set.
        let standard = [
            ("CONSUL_CLIENT_CERT", "/std/cert.pem"),
            ("CONSUL_CLIENT_KEY", "/std/key.pem"),
        ];
        let s = parse_with_env(&["consul-tls://"], &standard).expect("valid");
        assert_eq!(s.consul.tls.client_cert, Some(PathBuf::from("/std/cert.pem")));
        assert_eq!(s.consul.tls.client_key, Some(PathBuf::from("/std/key.pem")));
        let mut both = standard.to_vec();
        both.push(("CONSUL_TLSCERT", "/reg/cert.pem"));
        let s = parse_with_env(&["consul-tls://"], &both).expect("valid");
        assert_eq!(s.consul.tls.client_cert, Some(PathBuf::from("/reg/cert.pem")));

        // CONSUL_HTTP_SSL=true makes consul:// use https, as Consul's Go client does.
        let s = parse_with_env(&["consul://h:8501"], &[("CONSUL_HTTP_SSL", "true")]).expect("valid");
        assert_eq!(address(&s), "https://h:8501");

        let err = parse_with_env(&["consul-tls://"], &[("CONSUL_HTTP_SSL_VERIFY", "maybe")])
            .expect_err("not a boolean");
        assert!(
            err.to_string().starts_with("CONSUL_HTTP_SSL_VERIFY=\"maybe\""),
            "{err}"
        );
    }

    #[test]
    fn empty_ip_means_unset() {
        assert_eq!(parse_args(&["-ip=", "consul://"]).expect("valid").ip, None);
    }

    #[test]
    fn every_flag_can_come_from_the_environment() {
        for arg in Args::command().get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            let env = arg.get_env().and_then(|e| e.to_str()).unwrap_or_default();
            let shared = ["BERTH_LOG_LEVEL", "BERTH_LOG_FORMAT"];
            assert!(
                env.starts_with("BERTH_AGENT_") || shared.contains(&env),
                "argument {id} has no BERTH_AGENT_* variable (got {env:?})"
            );
        }
    }

    #[test]
    fn log_flags_go_style() {
        let s = parse_args(&["-log-level=debug", "-log-format=json", "consul://"]).expect("valid");
        assert_eq!(s.log.log_level, "debug");
        assert_eq!(s.log.log_format, berth_support::logging::LogFormat::Json);
        let s = parse_args(&["consul://"]).expect("valid");
        assert_eq!(s.log, berth_support::logging::LogArgs::default());
        assert!(parse_args(&["-log-format=xml", "consul://"]).is_err());
    }
}
