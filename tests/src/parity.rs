//! Parity with Traefik: one Consul catalog, the real Traefik and Berth side by side, the same
//! requests sent to both, and what clients and backends saw compared request by request.
//!
//! A test builds [`Case`]s (a name, the services of its catalog with their tags, and the
//! [`Request`]s to send) and hands them all to [`run`], which starts one Consul, one echo backend
//! per service instance (berth-demo `--echo`, so the backend reports exactly what it received),
//! one Traefik and one Berth (berth-control and berth-proxy) for all of them, waits until both
//! route the catalog, then sends every request to each side and compares:
//!
//! - the status, and which backend answered (or that the proxy answered itself);
//! - the method, path and raw query the backend saw, and every header it received, except those
//!   in [`IGNORED_REQUEST_HEADERS`] (each with the reason it may differ);
//! - every response header, except those in [`IGNORED_RESPONSE_HEADERS`] (with reasons): so
//!   `Location`, `WWW-Authenticate`, `Set-Cookie` (name and attributes) and the headers a
//!   middleware set or removed are all compared.
//!
//! Each request also states what Traefik must do (status, backend, path, ...): a case whose
//! router Traefik did not load would otherwise "agree" on a 404. A failing expectation is a
//! mistake in the case (or a Traefik change), reported apart from parity differences.
//! A difference Berth keeps on purpose is declared on the request with its reason
//! ([`Request::known_difference`]); it is shown, not failed, and belongs in the README.
//!
//! `BERTH_PARITY=traefik-only` runs the Traefik side alone (the expectations only): for working
//! on cases while Berth cannot route them yet.
//!
//! Not for: Traefik v1 tags (`traefik.frontend.*`) or Fabio's `urlprefix-`: Traefik 3 reads
//! neither, so there is nothing to compare with; unit tests of those dialects cover them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::consul::Registration;
use crate::traefik::{Traefik, TraefikOptions};
use crate::{free_port, wait_until, Backend, Consul, ControlPlane, Proxy};

/// Request headers a backend receives that are compared less than exactly, with how and why.
pub const IGNORED_REQUEST_HEADERS: &[(&str, Compare, &str)] = &[
    (
        "x-forwarded-server",
        Compare::Ignore,
        "names the proxy that forwarded: Traefik writes its machine's host name, Berth its own \
         name; it tells which proxy, not how the request was routed",
    ),
    (
        "cookie",
        Compare::CookieNames,
        "a sticky cookie the client sends back holds each proxy's own token for the endpoint; \
         the names of the cookies must agree",
    ),
    (
        "accept-encoding",
        Compare::Ignore,
        "Go's HTTP client inside Traefik asks the backend for gzip when the client sent no \
         Accept-Encoding, and unzips the answer itself; a proxy that forwards the client's \
         headers as they are is as correct",
    ),
    (
        "x-request-id",
        Compare::Ignore,
        "Berth passes on the client's X-Request-Id or, without one, makes up a random one (as \
         Envoy does) so the access log and the backend can name the request; Traefik sends none",
    ),
    (
        "x-traefik-router",
        Compare::Ignore,
        "Traefik's loop guard for default-rule routers: it names Traefik's router; Berth has no \
         such header",
    ),
];

/// How a header is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// Not compared.
    Ignore,
    /// Only whether both sides sent it.
    Presence,
    /// Only when a backend answered (a proxy's own answers differ in this header).
    WhenBackendAnswered,
    /// `Set-Cookie`: the cookie's name and attributes, not its opaque value.
    CookieShape,
    /// `Cookie`: the names of the cookies, in order, not their values.
    CookieNames,
}

/// Response headers compared less than exactly, with how and why.
pub const IGNORED_RESPONSE_HEADERS: &[(&str, Compare, &str)] = &[
    ("date", Compare::Ignore, "the clock"),
    (
        "x-demo-instance",
        Compare::Ignore,
        "which instance of the service answered: the two proxies' round robins may start at \
         different instances; the service is compared as `answered by`, stickiness as `same \
         instance as before`",
    ),
    (
        "x-berth-error",
        Compare::WhenBackendAnswered,
        "Berth names the reason when it answers itself (no-route, ...) for operators; Traefik's \
         own answers carry no such header",
    ),
    (
        "cache-control",
        Compare::WhenBackendAnswered,
        "Berth marks its own error answers no-store so no cache keeps a passing 404 or 502; \
         Traefik sets nothing on its own answers",
    ),
    (
        "content-length",
        Compare::Ignore,
        "a proxy's own answers (404, 401, 403, 429, redirects) carry a short text in its own \
         words, and an echo's length counts the request headers ignored above; what an echo \
         says is compared field by field",
    ),
    (
        "content-type",
        Compare::WhenBackendAnswered,
        "the type of a proxy's own short text (404, 401, ...), which is in its own words",
    ),
    (
        "retry-after",
        Compare::Presence,
        "seconds until the rate limit lets the client in again: depends on the moment",
    ),
    (
        "x-retry-in",
        Compare::Presence,
        "Traefik's precise form of Retry-After: depends on the moment",
    ),
    (
        "set-cookie",
        Compare::CookieShape,
        "a sticky cookie's value is each proxy's own opaque token for the endpoint (Traefik \
         hashes the server URL); its name and attributes must agree",
    ),
];

/// One service of a case's catalog.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    /// Tags of every instance; `{port}` is replaced by the instance's backend port.
    pub tags: Vec<String>,
    /// How many instances (echo backends named `<service>-1`, `<service>-2`, ...).
    pub instances: usize,
    /// Register the instances at a port where nothing listens, so only a
    /// `loadbalancer.server.port` tag naming `{port}` reaches them.
    pub register_dead_port: bool,
    /// Further instances (`<service>-dead-1`, ...) registered at a port where nothing listens:
    /// servers that refuse connections.
    pub dead_instances: usize,
}

/// What the client did for one [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// One request.
    Single,
    /// A slow request (`GET /slow?ms=N` on the same host) is sent first; once a backend holds
    /// it, the request is sent (in-flight limits).
    WhileInFlight { slow_ms: u64 },
}

/// One request of a case, with what Traefik must answer.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub entrypoint: String,
    pub host: String,
    /// Path and query as sent on the wire.
    pub target: String,
    pub headers: Vec<(String, String)>,
    /// Send the cookies this side set so far in the case (a client's cookie jar).
    pub cookies: bool,
    pub step: Step,
    pub expect: Expect,
    /// Why Berth answers differently on purpose, if it does.
    pub known_difference: Option<String>,
}

/// What Traefik must answer; `None` is not checked.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    pub status: Option<u16>,
    /// `Some(None)`: the proxy answered itself; `Some(Some(s))`: a backend of service `s`.
    pub backend: Option<Option<String>>,
    pub path: Option<String>,
    pub query: Option<Option<String>>,
    /// Request headers the backend saw (`None`: absent).
    pub seen_headers: Vec<(String, Option<String>)>,
    /// Response headers (`None`: absent).
    pub response_headers: Vec<(String, Option<String>)>,
    /// Whether the same instance answered as for the previous request.
    pub same_instance: Option<bool>,
}

/// A `GET` of `target` (path and query) with `Host: host` on entrypoint `web`.
pub fn get(host: &str, target: &str) -> Request {
    request("GET", host, target)
}

/// A request with any method.
pub fn request(method: &str, host: &str, target: &str) -> Request {
    Request {
        method: method.to_string(),
        entrypoint: "web".to_string(),
        host: host.to_string(),
        target: target.to_string(),
        headers: Vec::new(),
        cookies: false,
        step: Step::Single,
        expect: Expect::default(),
        known_difference: None,
    }
}

impl Request {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
    pub fn basic_auth(self, user: &str, password: &str) -> Self {
        let token = base64(format!("{user}:{password}").as_bytes());
        self.header("authorization", &format!("Basic {token}"))
    }
    pub fn on(mut self, entrypoint: &str) -> Self {
        self.entrypoint = entrypoint.to_string();
        self
    }
    /// Send the cookies this side's earlier answers in the case set, as a browser would.
    pub fn with_cookies(mut self) -> Self {
        self.cookies = true;
        self
    }
    pub fn while_in_flight(mut self, slow_ms: u64) -> Self {
        self.step = Step::WhileInFlight { slow_ms };
        self
    }
    pub fn status(mut self, status: u16) -> Self {
        self.expect.status = Some(status);
        self
    }
    /// Traefik must pass it to a backend of `service` (and answer 200 unless said otherwise).
    pub fn backend(mut self, service: &str) -> Self {
        self.expect.backend = Some(Some(service.to_string()));
        self.expect.status.get_or_insert(200);
        self
    }
    /// Traefik must answer `status` itself, reaching no backend.
    pub fn refused(mut self, status: u16) -> Self {
        self.expect.backend = Some(None);
        self.expect.status = Some(status);
        self
    }
    /// Traefik routes nothing for it: 404 from the proxy.
    pub fn unrouted(self) -> Self {
        self.refused(404)
    }
    pub fn path(mut self, path: &str) -> Self {
        self.expect.path = Some(path.to_string());
        self
    }
    pub fn query(mut self, query: Option<&str>) -> Self {
        self.expect.query = Some(query.map(str::to_string));
        self
    }
    pub fn seen(mut self, name: &str, value: Option<&str>) -> Self {
        self.expect
            .seen_headers
            .push((name.to_ascii_lowercase(), value.map(str::to_string)));
        self
    }
    pub fn response(mut self, name: &str, value: Option<&str>) -> Self {
        self.expect
            .response_headers
            .push((name.to_ascii_lowercase(), value.map(str::to_string)));
        self
    }
    pub fn location(self, value: &str) -> Self {
        self.response("location", Some(value))
    }
    pub fn same_instance(mut self, same: bool) -> Self {
        self.expect.same_instance = Some(same);
        self
    }
    pub fn known_difference(mut self, why: &str) -> Self {
        self.known_difference = Some(why.to_string());
        self
    }

    fn describe(&self) -> String {
        let mut text = format!(
            "{} http://{}{} (entrypoint {})",
            self.method, self.host, self.target, self.entrypoint
        );
        for (k, v) in &self.headers {
            let _ = write!(text, " [{k}: {v}]");
        }
        if self.cookies {
            text.push_str(" [with the cookies set so far]");
        }
        if let Step::WhileInFlight { slow_ms } = self.step {
            let _ = write!(text, " [while a {slow_ms} ms request is in flight]");
        }
        text
    }
}

/// One case: its catalog and its requests.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub services: Vec<Service>,
    pub requests: Vec<Request>,
    /// Routers Traefik must have loaded before requests are sent; derived from the tags when
    /// `None` (every `<prefix>.http.routers.<name>.` tag, or the default router).
    pub traefik_routers: Option<Vec<String>>,
}

impl Case {
    pub fn new(name: &str) -> Case {
        Case {
            name: name.to_string(),
            services: Vec::new(),
            requests: Vec::new(),
            traefik_routers: None,
        }
    }

    /// A service with one instance.
    pub fn service(self, name: &str, tags: &[&str]) -> Case {
        self.service_with(name, tags, 1, false)
    }

    pub fn service_with(
        mut self,
        name: &str,
        tags: &[&str],
        instances: usize,
        register_dead_port: bool,
    ) -> Case {
        self.services.push(Service {
            name: name.to_string(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            instances: instances.max(1),
            register_dead_port,
            dead_instances: 0,
        });
        self
    }

    /// Adds `n` instances that refuse connections to the last service (see
    /// [`Service::dead_instances`]).
    pub fn dead_instances(mut self, n: usize) -> Case {
        if let Some(service) = self.services.last_mut() {
            service.dead_instances = n;
        }
        self
    }

    pub fn request(mut self, request: Request) -> Case {
        self.requests.push(request);
        self
    }

    /// The routers Traefik must load (see [`Case::traefik_routers`]).
    pub fn traefik_routers(mut self, routers: &[&str]) -> Case {
        self.traefik_routers = Some(routers.iter().map(|r| r.to_string()).collect());
        self
    }

    fn routers_to_wait_for(&self) -> Vec<String> {
        if let Some(routers) = &self.traefik_routers {
            return routers.clone();
        }
        let mut names = BTreeSet::new();
        for service in &self.services {
            let mut own = BTreeSet::new();
            for tag in &service.tags {
                if let Some(rest) = tag.strip_prefix("traefik.http.routers.") {
                    if let Some((router, _)) = rest.split_once('.') {
                        own.insert(router.to_string());
                    }
                }
            }
            if own.is_empty() && service.tags.iter().any(|t| t == "traefik.enable=true") {
                own.insert(normalize(&service.name));
            }
            names.extend(own);
        }
        names.into_iter().collect()
    }
}

/// Traefik's `normalize`: every run of characters other than letters and digits becomes `-`.
pub fn normalize(name: &str) -> String {
    let mut out = String::new();
    let mut dash = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
            dash = false;
        } else if !dash {
            out.push('-');
            dash = true;
        }
    }
    out.trim_matches('-').to_string()
}

/// What the backend saw, from its echo.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub service: String,
    pub instance: String,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Lower-case names, in arrival order.
    pub headers: Vec<(String, String)>,
}

/// What one side answered to one request.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: u16,
    pub backend: Option<Seen>,
    /// Lower-case names, in order.
    pub response_headers: Vec<(String, String)>,
    /// Whether the same instance answered as for the previous request of the case.
    pub same_instance: Option<bool>,
}

/// One field on which the two sides differ (or Traefik differs from the expectation).
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    pub field: String,
    pub left: String,
    pub right: String,
}

/// One side under test: where its entrypoints listen.
struct Side {
    name: &'static str,
    entrypoints: BTreeMap<String, String>,
    /// `127.0.0.1:<port>` of every echo backend (shared by both sides).
    backends: Vec<String>,
}

/// What a side's client remembers within one case.
#[derive(Default)]
struct ClientMemory {
    /// The previous answer.
    previous: Option<Outcome>,
    /// Cookie name → value, from every `Set-Cookie` so far.
    jar: BTreeMap<String, String>,
}

impl ClientMemory {
    fn remember(&mut self, outcome: Outcome) {
        for (k, v) in &outcome.response_headers {
            if k != "set-cookie" {
                continue;
            }
            let pair = v.split(';').next().unwrap_or_default().trim();
            if let Some((name, value)) = pair.split_once('=') {
                self.jar.insert(name.to_string(), value.to_string());
            }
        }
        self.previous = Some(outcome);
    }

    fn cookie_header(&self) -> Option<String> {
        let pairs: Vec<String> = self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
        (!pairs.is_empty()).then(|| pairs.join("; "))
    }
}

/// Whether Berth takes part (`BERTH_PARITY=traefik-only` leaves it out).
fn berth_enabled() -> bool {
    std::env::var("BERTH_PARITY").map_or(true, |v| v != "traefik-only")
}

/// Runs every case against Traefik and Berth sharing one Consul, and fails with a table of every
/// difference (and every wrong expectation about Traefik) if there is any.
pub async fn run(cases: Vec<Case>) -> Result<()> {
    let started = Instant::now();
    check_unique_services(&cases)?;
    let consul = Consul::start().await?;
    // The catalog is whole before either proxy starts: both read it at once.
    let backends = register_catalog(&consul, &cases).await?;
    let options = TraefikOptions::default();
    let traefik = Traefik::start(&consul.http_addr, &options).await?;
    let berth = if berth_enabled() {
        Some(Berth::start(&consul, &options.entrypoints)?)
    } else {
        None
    };
    let wanted: Vec<String> = cases.iter().flat_map(Case::routers_to_wait_for).collect();
    let routers = traefik.wait_routers(&wanted).await?;
    if let Some(berth) = &berth {
        berth.wait_routing().await?;
    }
    let ready = started.elapsed();

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .user_agent("berth-parity")
        .build()?;
    let backend_addrs: Vec<String> = backends.iter().map(|b| format!("127.0.0.1:{}", b.port)).collect();
    let traefik_side = Side {
        name: "traefik",
        entrypoints: traefik.entrypoints.clone(),
        backends: backend_addrs.clone(),
    };
    let berth_side = berth.as_ref().map(|b| Side {
        name: "berth",
        entrypoints: b.entrypoints.clone(),
        backends: backend_addrs,
    });
    let mut tally = Tally::default();
    let mut report = String::new();
    for case in &cases {
        run_case(
            &http,
            case,
            &traefik_side,
            berth_side.as_ref(),
            &mut tally,
            &mut report,
        )
        .await;
    }

    let sides = if berth.is_some() {
        "Traefik and Berth"
    } else {
        "Traefik only (BERTH_PARITY=traefik-only)"
    };
    let requests: usize = cases.iter().map(|c| c.requests.len()).sum();
    let summary = format!(
        "parity ({sides}): {}/{} cases agree, {requests} requests, {} differing, {} known \
         differences, {} wrong expectations about Traefik; ready after {ready:.1?}, done after \
         {:.1?}",
        tally.cases_ok,
        cases.len(),
        tally.differences,
        tally.known,
        tally.wrong_expectations,
        started.elapsed()
    );
    if tally.differences > 0 || tally.wrong_expectations > 0 {
        let routers: Vec<String> = routers
            .iter()
            .filter(|r| r.name.ends_with("@consulcatalog"))
            .map(|r| {
                let errors = if r.errors.is_empty() {
                    String::new()
                } else {
                    format!(" {:?}", r.errors)
                };
                format!("  {} [{}] {}{errors}", r.name, r.status, r.rule)
            })
            .collect();
        bail!("{summary}\n{report}\nTraefik's routers:\n{}", routers.join("\n"));
    }
    eprintln!("{summary}\n{report}");
    drop(backends);
    Ok(())
}

/// Starts one echo backend per instance of every case's services and writes them all into the
/// catalog (on one external node, `parity`).
async fn register_catalog(consul: &Consul, cases: &[Case]) -> Result<Vec<Backend>> {
    let mut backends: Vec<Backend> = Vec::new();
    let mut registrations = Vec::new();
    for service in cases.iter().flat_map(|c| &c.services) {
        for i in 1..=service.instances {
            let name = format!("{}-{i}", service.name);
            let backend = Backend::start_echo(&service.name, &name).await?;
            let port = if service.register_dead_port {
                free_port()
            } else {
                backend.port
            };
            let tags = service
                .tags
                .iter()
                .map(|t| t.replace("{port}", &backend.port.to_string()))
                .collect();
            registrations.push(Registration {
                node: "parity".to_string(),
                id: name.clone(),
                service: service.name.clone(),
                address: "127.0.0.1".to_string(),
                port,
                tags,
            });
            backends.push(backend);
        }
        for i in 1..=service.dead_instances {
            let tags = service.tags.iter().map(|t| t.replace("{port}", "1")).collect();
            registrations.push(Registration {
                node: "parity".to_string(),
                id: format!("{}-dead-{i}", service.name),
                service: service.name.clone(),
                address: "127.0.0.1".to_string(),
                port: free_port(),
                tags,
            });
        }
    }
    consul.api().register_many(&registrations).await?;
    Ok(backends)
}

/// Counts over a run.
#[derive(Debug, Default)]
struct Tally {
    cases_ok: usize,
    /// Requests on which Berth differs from Traefik, not on purpose.
    differences: usize,
    /// Requests on which Berth differs on purpose.
    known: usize,
    /// Requests on which Traefik did not do what the case expects.
    wrong_expectations: usize,
}

/// Sends a case's requests to both sides in turn, counts, and appends what differed to `report`.
async fn run_case(
    http: &reqwest::Client,
    case: &Case,
    traefik: &Side,
    berth: Option<&Side>,
    tally: &mut Tally,
    report: &mut String,
) {
    let mut case_report = String::new();
    let mut case_ok = true;
    let mut traefik_client = ClientMemory::default();
    let mut berth_client = ClientMemory::default();
    for (i, req) in case.requests.iter().enumerate() {
        let t = send(http, traefik, req, &traefik_client).await;
        let b = match berth {
            Some(side) => Some(send(http, side, req, &berth_client).await),
            None => None,
        };
        let mut lines = String::new();
        match &t {
            Ok(t) => {
                let wrong = check_expectation(req, t);
                if !wrong.is_empty() {
                    tally.wrong_expectations += 1;
                    case_ok = false;
                    let _ = writeln!(lines, "    Traefik did not do what the case expects:");
                    lines.push_str(&table(&wrong, "expected", "traefik"));
                }
            }
            Err(e) => {
                tally.wrong_expectations += 1;
                case_ok = false;
                let _ = writeln!(lines, "    Traefik: request failed: {e:#}");
            }
        }
        match (&t, &b) {
            (Ok(t), Some(Ok(b))) => {
                let diffs = compare(t, b);
                if !diffs.is_empty() {
                    match &req.known_difference {
                        Some(why) => {
                            tally.known += 1;
                            let _ = writeln!(lines, "    known difference ({why}):");
                        }
                        None => {
                            tally.differences += 1;
                            case_ok = false;
                            let _ = writeln!(lines, "    Berth differs from Traefik:");
                        }
                    }
                    lines.push_str(&table(&diffs, "traefik", "berth"));
                }
            }
            (_, Some(Err(e))) => {
                tally.differences += 1;
                case_ok = false;
                let _ = writeln!(lines, "    Berth: request failed: {e:#}");
            }
            _ => {}
        }
        if !lines.is_empty() {
            let _ = writeln!(case_report, "  #{} {}", i + 1, req.describe());
            case_report.push_str(&lines);
        }
        if let Ok(t) = t {
            traefik_client.remember(t);
        }
        if let Some(Ok(b)) = b {
            berth_client.remember(b);
        }
    }
    if case_ok {
        tally.cases_ok += 1;
    }
    if !case_report.is_empty() {
        let verdict = if case_ok {
            "agrees, with known differences"
        } else {
            "DIFFERS"
        };
        let _ = writeln!(report, "case {:?} ({verdict}):", case.name);
        report.push_str(&case_report);
    }
}

fn check_unique_services(cases: &[Case]) -> Result<()> {
    let mut seen = BTreeMap::new();
    for case in cases {
        for service in &case.services {
            if let Some(other) = seen.insert(service.name.clone(), case.name.clone()) {
                bail!(
                    "service {:?} is in case {:?} and case {other:?}: cases share one catalog, \
                     so each needs services (and host names, middleware names) of its own",
                    service.name,
                    case.name
                );
            }
        }
    }
    Ok(())
}

/// Berth under test: one control plane and one proxy with the same entrypoints as Traefik.
pub struct Berth {
    pub control: ControlPlane,
    pub proxy: Proxy,
    /// Entrypoint name → the proxy's `127.0.0.1:port` for it.
    pub entrypoints: BTreeMap<String, String>,
}

impl Berth {
    /// Starts berth-control on `consul` and a proxy with one free loopback port per entrypoint
    /// name (Traefik's, for a side-by-side run).
    pub fn start(consul: &Consul, entrypoint_names: &[String]) -> Result<Berth> {
        let control = ControlPlane::start(consul, &[])?;
        let entrypoints: BTreeMap<String, String> = entrypoint_names
            .iter()
            .map(|name| (name.clone(), format!("127.0.0.1:{}", free_port())))
            .collect();
        let specs: Vec<(&str, &str)> = entrypoints
            .iter()
            .map(|(n, a)| (n.as_str(), a.as_str()))
            .collect();
        let proxy = Proxy::start_with_entrypoints("berth-parity", &control.url(), &specs)?;
        Ok(Berth {
            control,
            proxy,
            entrypoints,
        })
    }

    /// Waits until the control plane has read the catalog and the proxy applied that snapshot.
    pub async fn wait_routing(&self) -> Result<()> {
        self.control.wait_ready().await?;
        let snapshot = self.control.snapshot().await?;
        let version = snapshot["version"]
            .as_str()
            .with_context(|| format!("berth-control's snapshot has no version: {snapshot}"))?;
        self.proxy.wait_version(version).await
    }
}

/// Sends `req` to `side` and reads what it answered and what the backend saw.
async fn send(client: &reqwest::Client, side: &Side, req: &Request, state: &ClientMemory) -> Result<Outcome> {
    let cookies = if req.cookies { state.cookie_header() } else { None };
    let addr = side
        .entrypoints
        .get(&req.entrypoint)
        .with_context(|| format!("{} has no entrypoint {:?}", side.name, req.entrypoint))?;
    let mut outcome = match req.step {
        Step::Single => send_once(client, addr, req, cookies.as_deref()).await?,
        Step::WhileInFlight { slow_ms } => {
            while_in_flight(client, addr, req, cookies.as_deref(), slow_ms, &side.backends).await?
        }
    };
    let previous = state.previous.as_ref().and_then(|p| p.backend.as_ref());
    outcome.same_instance = match (previous, &outcome.backend) {
        (Some(p), Some(b)) if req.cookies || req.expect.same_instance.is_some() => {
            Some(p.instance == b.instance)
        }
        _ => None,
    };
    normalize_outcome(&mut outcome, side);
    Ok(outcome)
}

/// [`Step::WhileInFlight`]: sends a slow request, waits until a backend holds it (every echo
/// backend counts its waiting `/slow` requests), then sends `req` once, while the slow one is
/// in flight.
async fn while_in_flight(
    client: &reqwest::Client,
    addr: &str,
    req: &Request,
    cookies: Option<&str>,
    slow_ms: u64,
    backends: &[String],
) -> Result<Outcome> {
    let slow = get(&req.host, &format!("/slow?ms={slow_ms}")).on(&req.entrypoint);
    let (slow_client, slow_addr) = (client.clone(), addr.to_string());
    let in_flight = tokio::spawn(async move { send_once(&slow_client, &slow_addr, &slow, None).await });
    let held = wait_until(
        "a backend to hold the slow request",
        Duration::from_millis(slow_ms),
        || async {
            let mut waiting = 0;
            for backend in backends {
                let url = format!("http://{backend}/slow/in-flight");
                let text = client.get(&url).send().await?.text().await?;
                waiting += text.trim().parse::<usize>().unwrap_or(0);
            }
            Ok((waiting > 0).then_some(()))
        },
    )
    .await;
    let probe = match held {
        Ok(()) => send_once(client, addr, req, cookies).await,
        Err(e) => Err(e),
    };
    let slow = in_flight.await.context("the slow request's task")??;
    probe.with_context(|| format!("the slow request was answered {}", slow.status))
}

async fn send_once(
    client: &reqwest::Client,
    addr: &str,
    req: &Request,
    cookies: Option<&str>,
) -> Result<Outcome> {
    let method = reqwest::Method::from_bytes(req.method.as_bytes())
        .with_context(|| format!("method {:?}", req.method))?;
    let url = format!("http://{addr}{}", req.target);
    let mut builder = client.request(method, &url).header("host", &req.host);
    for (k, v) in &req.headers {
        builder = builder.header(k, v);
    }
    if let Some(cookies) = cookies {
        builder = builder.header("cookie", cookies);
    }
    let response = builder
        .send()
        .await
        .with_context(|| format!("{} {url} (Host: {})", req.method, req.host))?;
    let status = response.status().as_u16();
    let response_headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let from_backend = header("content-type").as_deref() == Some("application/json");
    let instance = header("x-demo-instance");
    let service = header("x-demo-service");
    let body = response.text().await.unwrap_or_default();
    let backend = match (from_backend, instance) {
        // A HEAD answer has no body: only who answered is known.
        (true, Some(instance)) if body.is_empty() => Some(Seen {
            service: service.unwrap_or_default(),
            instance,
            method: req.method.clone(),
            path: "(no body to tell)".to_string(),
            query: None,
            headers: Vec::new(),
        }),
        (true, Some(_)) => {
            Some(parse_echo(&body).with_context(|| format!("the echo backend's answer {body:?}"))?)
        }
        _ => None,
    };
    Ok(Outcome {
        status,
        backend,
        response_headers,
        same_instance: None,
    })
}

fn parse_echo(body: &str) -> Result<Seen> {
    let v: Value = serde_json::from_str(body)?;
    let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    let headers = v["headers"]
        .as_array()
        .context("no headers")?
        .iter()
        .map(|pair| {
            (
                pair[0].as_str().unwrap_or_default().to_ascii_lowercase(),
                pair[1].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    Ok(Seen {
        service: text("service"),
        instance: text("name"),
        method: text("method"),
        path: text("path"),
        query: v["query"].as_str().map(str::to_string),
        headers,
    })
}

/// Writes each side's own entrypoint addresses as `<entrypoint NAME>` so values that name them
/// (a Location, an X-Forwarded-Host) compare equal.
fn normalize_outcome(outcome: &mut Outcome, side: &Side) {
    let fix = |value: &mut String| {
        for (name, addr) in &side.entrypoints {
            if value.contains(addr.as_str()) {
                *value = value.replace(addr.as_str(), &format!("<entrypoint {name}>"));
            }
        }
    };
    for (_, v) in &mut outcome.response_headers {
        fix(v);
    }
    if let Some(seen) = &mut outcome.backend {
        for (_, v) in &mut seen.headers {
            fix(v);
        }
    }
}

/// Every value of header `name`, in order, joined with `, `; `None` if absent.
fn header_values(headers: &[(String, String)], name: &str) -> Option<String> {
    let values: Vec<&str> = headers
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

fn show(value: &Option<String>) -> String {
    value.clone().unwrap_or_else(|| "(absent)".to_string())
}

fn who(outcome: &Outcome) -> String {
    outcome
        .backend
        .as_ref()
        .map_or_else(|| "(the proxy itself)".to_string(), |s| s.service.clone())
}

/// The differences between what Traefik (`t`) and Berth (`b`) did.
pub fn compare(t: &Outcome, b: &Outcome) -> Vec<Difference> {
    let mut diffs = Vec::new();
    let mut differ = |field: &str, left: String, right: String| {
        if left != right {
            diffs.push(Difference {
                field: field.to_string(),
                left,
                right,
            });
        }
    };
    differ("status", t.status.to_string(), b.status.to_string());
    differ("answered by", who(t), who(b));
    if let (Some(ts), Some(bs)) = (&t.backend, &b.backend) {
        differ("method seen", ts.method.clone(), bs.method.clone());
        differ("path seen", ts.path.clone(), bs.path.clone());
        differ("query seen", show(&ts.query), show(&bs.query));
        let names: BTreeSet<&str> = ts
            .headers
            .iter()
            .chain(&bs.headers)
            .map(|(k, _)| k.as_str())
            .collect();
        for name in names {
            let how = IGNORED_REQUEST_HEADERS
                .iter()
                .find(|(n, _, _)| *n == name)
                .map(|(_, how, _)| *how);
            let (tv, bv) = (header_values(&ts.headers, name), header_values(&bs.headers, name));
            let field = format!("seen {name}");
            match how {
                Some(Compare::Ignore) => {}
                Some(Compare::CookieNames) => differ(
                    &field,
                    show(&tv.map(|v| cookie_names(&v))),
                    show(&bv.map(|v| cookie_names(&v))),
                ),
                _ => differ(&field, show(&tv), show(&bv)),
            }
        }
    }
    let both_from_backend = t.backend.is_some() && b.backend.is_some();
    let names: BTreeSet<&str> = t
        .response_headers
        .iter()
        .chain(&b.response_headers)
        .map(|(k, _)| k.as_str())
        .collect();
    for name in names {
        let how = IGNORED_RESPONSE_HEADERS
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, how, _)| *how);
        let (tv, bv) = (
            header_values(&t.response_headers, name),
            header_values(&b.response_headers, name),
        );
        let field = format!("response {name}");
        match how {
            Some(Compare::Ignore) => {}
            Some(Compare::Presence) => differ(&field, presence(&tv), presence(&bv)),
            Some(Compare::WhenBackendAnswered) if !both_from_backend => {}
            Some(Compare::CookieShape) => differ(
                &field,
                show(&tv.map(|v| cookie_shape(&v))),
                show(&bv.map(|v| cookie_shape(&v))),
            ),
            _ => differ(&field, show(&tv), show(&bv)),
        }
    }
    differ(
        "same instance as before",
        format!("{:?}", t.same_instance),
        format!("{:?}", b.same_instance),
    );
    diffs
}

fn presence(value: &Option<String>) -> String {
    if value.is_some() { "(present)" } else { "(absent)" }.to_string()
}

/// The names in a `Cookie` header, values blanked: `a=<value>; b=<value>`.
pub fn cookie_names(cookie: &str) -> String {
    cookie
        .split(';')
        .map(|pair| {
            let name = pair.trim().split_once('=').map_or(pair.trim(), |(k, _)| k);
            format!("{name}=<value>")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A Set-Cookie value with the cookie's own value blanked: `name=<value>; Path=/; HttpOnly`.
/// Attributes are sorted and lower-cased so their order and case do not count.
pub fn cookie_shape(set_cookie: &str) -> String {
    set_cookie
        .split(", ")
        .map(|one| {
            let mut parts = one.split(';').map(str::trim);
            let name = parts
                .next()
                .and_then(|kv| kv.split_once('='))
                .map_or("?", |(k, _)| k);
            let mut attrs: Vec<String> = parts.map(str::to_ascii_lowercase).collect();
            attrs.sort();
            let mut shape = format!("{name}=<value>");
            for a in attrs {
                shape.push_str("; ");
                shape.push_str(&a);
            }
            shape
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where Traefik's answer differs from what the request expects.
fn check_expectation(req: &Request, t: &Outcome) -> Vec<Difference> {
    let e = &req.expect;
    let mut wrong = Vec::new();
    let mut check = |field: &str, expected: String, got: String| {
        if expected != got {
            wrong.push(Difference {
                field: field.to_string(),
                left: expected,
                right: got,
            });
        }
    };
    if let Some(status) = e.status {
        check("status", status.to_string(), t.status.to_string());
    }
    if let Some(backend) = &e.backend {
        let expected = backend
            .clone()
            .unwrap_or_else(|| "(the proxy itself)".to_string());
        check("answered by", expected, who(t));
    }
    let seen = t.backend.as_ref();
    if let Some(path) = &e.path {
        check("path seen", path.clone(), show(&seen.map(|s| s.path.clone())));
    }
    if let Some(query) = &e.query {
        check(
            "query seen",
            show(query),
            show(&seen.and_then(|s| s.query.clone())),
        );
    }
    for (name, value) in &e.seen_headers {
        let got = seen.and_then(|s| header_values(&s.headers, name));
        check(&format!("seen {name}"), show(value), show(&got));
    }
    for (name, value) in &e.response_headers {
        let got = header_values(&t.response_headers, name);
        check(&format!("response {name}"), show(value), show(&got));
    }
    if let Some(same) = e.same_instance {
        check(
            "same instance as before",
            format!("{:?}", Some(same)),
            format!("{:?}", t.same_instance),
        );
    }
    wrong
}

/// The differences as an aligned table under a header row.
fn table(diffs: &[Difference], left: &str, right: &str) -> String {
    let clip = |s: &str| -> String {
        if s.chars().count() > 70 {
            let cut: String = s.chars().take(67).collect();
            format!("{cut}...")
        } else {
            s.to_string()
        }
    };
    let rows: Vec<(String, String, String)> = diffs
        .iter()
        .map(|d| (d.field.clone(), clip(&d.left), clip(&d.right)))
        .collect();
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(5);
    let w1 = rows
        .iter()
        .map(|r| r.1.chars().count())
        .max()
        .unwrap_or(0)
        .max(left.len());
    let mut out = format!("      {:w0$}  {:w1$}  {right}\n", "field", left);
    for (f, l, r) in rows {
        let _ = writeln!(out, "      {f:w0$}  {l:w1$}  {r}");
    }
    out
}

/// Standard base64 with padding (for `Authorization: Basic`).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
        }
    }

    #[test]
    fn normalize_is_traefiks() {
        assert_eq!(normalize("web_go"), "web-go");
        assert_eq!(normalize("a..b"), "a-b");
        assert_eq!(normalize("-x-"), "x");
    }

    #[test]
    fn cookie_names_blank_the_values() {
        assert_eq!(cookie_names("a=1; b=x=y"), "a=<value>; b=<value>");
    }

    #[test]
    fn cookie_shape_blanks_the_value_and_orders_attributes() {
        assert_eq!(
            cookie_shape("sticky=abc123; Path=/; HttpOnly"),
            "sticky=<value>; httponly; path=/"
        );
    }

    #[test]
    fn routers_derive_from_tags_or_default() {
        let case = Case::new("x")
            .service(
                "svc_a",
                &["traefik.enable=true", "traefik.http.routers.r1.rule=Host(`a`)"],
            )
            .service("svc_b", &["traefik.enable=true"]);
        assert_eq!(case.routers_to_wait_for(), vec!["r1", "svc-b"]);
    }

    #[test]
    fn the_cookie_jar_keeps_every_cookie_set_so_far() {
        let answer = |cookies: &[&str]| Outcome {
            status: 200,
            backend: None,
            response_headers: cookies
                .iter()
                .map(|c| ("set-cookie".to_string(), c.to_string()))
                .collect(),
            same_instance: None,
        };
        let mut client = ClientMemory::default();
        assert_eq!(client.cookie_header(), None);
        client.remember(answer(&["a=1; Path=/", "b=2"]));
        client.remember(answer(&[]));
        client.remember(answer(&["a=3; HttpOnly"]));
        assert_eq!(client.cookie_header().as_deref(), Some("a=3; b=2"));
    }

    #[test]
    fn expectations_name_what_traefik_did_otherwise() {
        let proxy_404 = Outcome {
            status: 404,
            backend: None,
            response_headers: vec![],
            same_instance: None,
        };
        assert!(check_expectation(&get("h", "/").unrouted(), &proxy_404).is_empty());
        let wrong = check_expectation(&get("h", "/").backend("svc").path("/x"), &proxy_404);
        let fields: Vec<&str> = wrong.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(fields, ["status", "answered by", "path seen"]);
    }

    #[test]
    fn compare_reports_each_field() {
        let seen = |path: &str| Seen {
            service: "s".into(),
            instance: "s-1".into(),
            method: "GET".into(),
            path: path.into(),
            query: None,
            headers: vec![
                ("x-forwarded-server".into(), path.into()),
                ("cookie".into(), format!("s={path}; t=1")),
            ],
        };
        let outcome = |path: &str| Outcome {
            status: 200,
            backend: Some(seen(path)),
            response_headers: vec![("date".into(), path.into())],
            same_instance: None,
        };
        assert!(compare(&outcome("/a"), &outcome("/a")).is_empty());
        let diffs = compare(&outcome("/a"), &outcome("/b"));
        assert_eq!(diffs.len(), 1, "{diffs:?}");
        assert_eq!(diffs[0].field, "path seen");
    }
}
