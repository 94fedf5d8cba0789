//! The real Traefik, run beside Berth by the parity tests (`tests/tests/parity_*.rs`).
//!
//! [`Traefik::start`] runs the binary that `scripts/setup.sh traefik` unpacks into `.tools/`
//! (Traefik 3.7.15) with its Consul Catalog provider reading the test's Consul, plain-HTTP
//! entrypoints on free 127.0.0.1 ports, and its API and ping on a separate internal entrypoint
//! used only to learn when it is ready and which routers it loaded. All configuration is given as
//! command-line flags (Traefik's static configuration), so nothing is written to disk.
//!
//! Not for: anything but tests. The configuration keeps Traefik from calling home (no version
//! check, no usage statistics) and listens only on 127.0.0.1.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::{free_port, tool_binary, wait_until, Proc};

/// The version the parity suite is written against (what `scripts/setup.sh` installs).
pub const TRAEFIK_VERSION: &str = "3.7.15";

/// Traefik's own default rule for the Consul Catalog provider, which Berth's default matches.
pub const DEFAULT_RULE: &str = "Host(`{{ normalize .Name }}`)";

/// Where the traefik binary is: `.tools/traefik/traefik` (scripts/setup.sh), else on PATH.
pub fn traefik_binary() -> Result<PathBuf> {
    if let Some(path) = tool_binary(".tools/traefik/traefik", "traefik") {
        return Ok(path);
    }
    bail!("traefik not found in .tools/ nor on PATH: run scripts/setup.sh traefik")
}

/// How to start Traefik.
#[derive(Debug, Clone)]
pub struct TraefikOptions {
    /// Names of the plain-HTTP entrypoints, each on a free port. Routers without an
    /// `entrypoints` tag are served on all of them (Traefik's default).
    pub entrypoints: Vec<String>,
    /// The provider's `defaultRule` (Traefik's template form).
    pub default_rule: String,
    /// The tag prefix (`providers.consulCatalog.prefix`).
    pub prefix: String,
    /// More static-configuration flags, `--name=value` each.
    pub extra_args: Vec<String>,
}

impl Default for TraefikOptions {
    fn default() -> Self {
        TraefikOptions {
            entrypoints: vec!["web".to_string(), "websecure".to_string()],
            default_rule: DEFAULT_RULE.to_string(),
            prefix: "traefik".to_string(),
            extra_args: Vec::new(),
        }
    }
}

/// One router as Traefik's API reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct RouterState {
    /// The name with its provider, e.g. `api@consulcatalog`.
    pub name: String,
    pub rule: String,
    /// `enabled`, `disabled` (an error keeps it from serving) or `warning`.
    pub status: String,
    /// What Traefik found wrong with it, if anything.
    pub errors: Vec<String>,
}

/// A running Traefik.
pub struct Traefik {
    pub proc: Proc,
    /// Entrypoint name → `127.0.0.1:<port>`.
    pub entrypoints: BTreeMap<String, String>,
    /// `127.0.0.1:<port>` of the internal entrypoint serving `/api` and `/ping`.
    pub api_addr: String,
    http: reqwest::Client,
}

impl Traefik {
    /// Starts Traefik reading the Consul at `consul_http_addr` (`http://127.0.0.1:<port>`) and
    /// waits until it answers `/ping`. Routers load a moment later: see [`Traefik::wait_routers`].
    /// When another process took one of the chosen ports before Traefik bound it, Traefik exits
    /// and is started again on other ports (up to three times).
    pub async fn start(consul_http_addr: &str, options: &TraefikOptions) -> Result<Traefik> {
        let consul = consul_http_addr
            .strip_prefix("http://")
            .with_context(|| format!("Consul address {consul_http_addr:?} is not http://HOST:PORT"))?
            .trim_end_matches('/');
        anyhow::ensure!(
            !options.entrypoints.iter().any(|e| e == "traefik"),
            "the entrypoint name `traefik` is Traefik's internal one (its API); choose another"
        );
        for _ in 0..3 {
            if let Some(traefik) = Self::start_once(consul, options).await? {
                return Ok(traefik);
            }
        }
        bail!("traefik: three sets of free ports in a row were taken before it could listen")
    }

    /// One start on fresh ports; `None` when a port was taken.
    async fn start_once(consul: &str, options: &TraefikOptions) -> Result<Option<Traefik>> {
        let api_addr = format!("127.0.0.1:{}", free_port());
        let entrypoints: BTreeMap<String, String> = options
            .entrypoints
            .iter()
            .map(|name| (name.clone(), format!("127.0.0.1:{}", free_port())))
            .collect();
        let mut args: Vec<String> = entrypoints
            .iter()
            .map(|(name, addr)| format!("--entryPoints.{name}.address={addr}"))
            .collect();
        args.extend([
            format!("--entryPoints.traefik.address={api_addr}"),
            "--api=true".into(),
            "--api.insecure=true".into(),
            "--api.dashboard=false".into(),
            "--ping=true".into(),
            "--providers.consulCatalog=true".into(),
            format!("--providers.consulCatalog.endpoint.address={consul}"),
            "--providers.consulCatalog.endpoint.scheme=http".into(),
            "--providers.consulCatalog.exposedByDefault=false".into(),
            "--providers.consulCatalog.watch=true".into(),
            "--providers.consulCatalog.refreshInterval=1s".into(),
            format!("--providers.consulCatalog.prefix={}", options.prefix),
            format!("--providers.consulCatalog.defaultRule={}", options.default_rule),
            // Apply a new catalog within 100 ms instead of Traefik's default 2 s.
            "--providers.providersThrottleDuration=100ms".into(),
            "--log.level=ERROR".into(),
            // Never call home from a test.
            "--global.checkNewVersion=false".into(),
            "--global.sendAnonymousUsage=false".into(),
        ]);
        args.extend(options.extra_args.iter().cloned());
        let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let proc = Proc::spawn("traefik", &traefik_binary()?, &arg_refs, &[])?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        let traefik = Traefik {
            proc,
            entrypoints,
            api_addr,
            http,
        };
        let ping = format!("http://{}/ping", traefik.api_addr);
        let listening = wait_until("traefik to answer /ping", Duration::from_secs(30), || async {
            let answered = traefik.http.get(&ping).send().await;
            if answered.is_ok_and(|r| r.status().is_success()) {
                return Ok(Some(true));
            }
            let logs = traefik.proc.logs();
            Ok(logs.contains("address already in use").then_some(false))
        })
        .await
        .with_context(|| traefik.proc.logs())?;
        Ok(listening.then_some(traefik))
    }

    /// `127.0.0.1:<port>` of entrypoint `name`.
    pub fn addr(&self, entrypoint: &str) -> Result<&str> {
        self.entrypoints
            .get(entrypoint)
            .map(String::as_str)
            .with_context(|| format!("Traefik has no entrypoint named {entrypoint:?}"))
    }

    /// Every HTTP router Traefik has loaded, from its API (`/api/http/routers`).
    pub async fn routers(&self) -> Result<Vec<RouterState>> {
        let url = format!("http://{}/api/http/routers?per_page=10000", self.api_addr);
        let routers = crate::http::get_json_via(&self.http, &url).await?;
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        Ok(routers
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|r| RouterState {
                name: text(&r["name"]),
                rule: text(&r["rule"]),
                status: text(&r["status"]),
                errors: r["error"]
                    .as_array()
                    .map(|e| e.iter().map(text).collect())
                    .unwrap_or_default(),
            })
            .collect())
    }

    /// Waits (up to 20 s) until every router of `names` is loaded, and returns them all. A name
    /// without `@` is taken as `<name>@consulcatalog`. Loaded means present in the API, whatever
    /// its status: a router with a bad rule is present and disabled.
    pub async fn wait_routers(&self, names: &[String]) -> Result<Vec<RouterState>> {
        let wanted: Vec<String> = names
            .iter()
            .map(|n| {
                if n.contains('@') {
                    n.clone()
                } else {
                    format!("{n}@consulcatalog")
                }
            })
            .collect();
        wait_until(
            &format!("traefik to load routers {wanted:?}"),
            Duration::from_secs(20),
            || async {
                let routers = self.routers().await?;
                let loaded = wanted.iter().all(|w| routers.iter().any(|r| &r.name == w));
                Ok(loaded.then_some(routers))
            },
        )
        .await
        .with_context(|| self.proc.logs())
    }
}
