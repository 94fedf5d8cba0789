//! Command-line flags and their parsing.
//!
//! For: turning flags (or their `BERTH_PROXY_*` environment variables) into a validated [`Config`],
//! so that every bad value stops the binary at start with an error naming the flag and the value.
//! Not for: binding sockets (see `listener` and `admin`) or anything that happens after start.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use thiserror::Error;

use crate::proxy::middleware::IpRanges;

/// The flags, as clap parses them. Validation that needs more than one value lives in
/// [`Cli::into_config`].
#[derive(Debug, Parser)]
#[command(
    name = "berth-proxy",
    version,
    about = "Berth's data plane: an HTTP reverse proxy that routes requests to containers as Traefik would.",
    long_about = "Berth's data plane: an HTTP reverse proxy that routes requests to containers as Traefik would.\n\n\
        berth-proxy holds no configuration of its own. It connects to berth-control (the control plane), \
        receives the complete routing state as snapshots (routes with matchers and middlewares, clusters of \
        endpoints), and forwards each request to a backend of the first route whose matcher takes it. When the control plane is unreachable it keeps routing \
        by the last snapshot it received and reconnects in the background.\n\n\
        With --cache-dir it also keeps the last applied snapshot on disk, and a restart routes by it at once, \
        before any control plane answers.\n\n\
        On SIGTERM or SIGINT it drains: /healthz answers 503 for --drain-grace while requests are still \
        served, then it stops accepting connections and lets requests in flight finish within \
        --drain-timeout (HTTP/2 clients are told with GOAWAY), then exits. A second signal exits at once.\n\n\
        Every flag can also be set with an environment variable, shown as [env: ...] below.",
    after_help = "Admin endpoints (on --admin-addr): GET /healthz (200 once a snapshot is applied, saying so when \
        it comes from the cache; 503 before, and while draining), GET /api/snapshot (the routing state in JSON), GET /metrics (Prometheus metrics)."
)]
pub(crate) struct Cli {
    /// Control-plane (berth-control) gRPC address(es) to fetch routes from, as http:// URLs, or
    /// https:// for a control plane serving TLS (then with --control-plane-ca). Give several, comma-separated, for failover: on every (re)connect the proxy tries the next one in
    /// the list.
    #[arg(
        long,
        env = "BERTH_PROXY_CONTROL_PLANE",
        value_name = "URL[,URL...]",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:18000",
        value_parser = parse_control_plane
    )]
    pub control_plane: Vec<ControlPlaneUrl>,

    /// PEM CA certificate(s) the control plane's certificate must be signed by. Required for
    /// https:// control planes; re-read at every (re)connect.
    #[arg(long, env = "BERTH_PROXY_CONTROL_PLANE_CA", value_name = "FILE")]
    pub control_plane_ca: Option<PathBuf>,

    /// PEM client certificate presented to https:// control planes that require one (mutual
    /// TLS, berth-control --grpc-client-ca). Re-read at every (re)connect.
    #[arg(
        long,
        env = "BERTH_PROXY_CONTROL_PLANE_CERT",
        value_name = "FILE",
        requires = "control_plane_key"
    )]
    pub control_plane_cert: Option<PathBuf>,

    /// PEM private key of --control-plane-cert.
    #[arg(
        long,
        env = "BERTH_PROXY_CONTROL_PLANE_KEY",
        value_name = "FILE",
        requires = "control_plane_cert"
    )]
    pub control_plane_key: Option<PathBuf>,

    /// Where to accept HTTP traffic, as NAME=ADDRESS (for example http=0.0.0.0:80). Repeat the flag (or
    /// separate with commas) to listen on several addresses. NAME is the entrypoint name that routes refer
    /// to: a route limited to entrypoint "web" is only served on the entrypoint named "web". Both
    /// HTTP/1.1 and cleartext HTTP/2 (h2c) are accepted; an entrypoint named in --tls speaks HTTPS instead.
    #[arg(
        long = "entrypoint",
        env = "BERTH_PROXY_ENTRYPOINT",
        value_name = "NAME=ADDRESS",
        value_delimiter = ',',
        default_value = "http=0.0.0.0:80",
        value_parser = parse_entrypoint
    )]
    pub entrypoints: Vec<EntrypointSpec>,

    /// Address of the admin HTTP server (health check and routing state). Keep it private: it is
    /// meant for operators and orchestrators, not for the public.
    #[arg(
        long,
        env = "BERTH_PROXY_ADMIN_ADDR",
        value_name = "ADDRESS",
        default_value = "127.0.0.1:18081"
    )]
    pub admin_addr: SocketAddr,

    /// Name this proxy reports to the control plane, shown in its admin API and logs. Defaults to this
    /// machine's host name.
    #[arg(long, env = "BERTH_PROXY_NODE_ID", value_name = "NAME")]
    pub node_id: Option<String>,

    /// How long to wait for a TCP connection to a backend (and to the control plane) before giving up.
    /// A backend that does not accept in time gets the client a 504. Examples: 500ms, 2s.
    #[arg(
        long,
        env = "BERTH_PROXY_CONNECT_TIMEOUT",
        value_name = "DURATION",
        default_value = "2s",
        value_parser = parse_duration
    )]
    pub connect_timeout: Duration,

    /// How long to wait for a backend's response headers, counted from the moment the request is
    /// forwarded (connecting included) or, for a request with a body, from the moment its body has
    /// been sent whole (an upload may stream for longer). Past it the client gets a 504. The
    /// response body, once started, is not limited. Examples: 30s, 1m.
    #[arg(
        long,
        env = "BERTH_PROXY_REQUEST_TIMEOUT",
        value_name = "DURATION",
        default_value = "30s",
        value_parser = parse_duration
    )]
    pub request_timeout: Duration,

    /// How long an idle keep-alive connection to a backend is kept for reuse before it is closed.
    /// A cluster's own timeouts (Berth's berth.timeout.* tags) override this flag, as they
    /// override --connect-timeout and --request-timeout (its first-byte timeout). Examples: 90s, 5m.
    #[arg(
        long,
        env = "BERTH_PROXY_BACKEND_IDLE_TIMEOUT",
        value_name = "DURATION",
        default_value = "90s",
        value_parser = parse_duration
    )]
    pub backend_idle_timeout: Duration,

    /// On SIGTERM or SIGINT, first answer 503 on /healthz for this long while still serving
    /// requests, so that a load balancer or DNS health check in front notices and stops sending
    /// traffic; 0 skips this step. Examples: 5s, 0.
    #[arg(
        long,
        env = "BERTH_PROXY_DRAIN_GRACE",
        value_name = "DURATION",
        default_value = "5s",
        value_parser = parse_duration_or_zero
    )]
    pub drain_grace: Duration,

    /// After --drain-grace, the proxy stops accepting connections and lets requests in flight
    /// finish for at most this long (HTTP/2 clients get a GOAWAY) before exiting. The admin
    /// address stays up until the end. Examples: 30s, 1m.
    #[arg(
        long,
        env = "BERTH_PROXY_DRAIN_TIMEOUT",
        value_name = "DURATION",
        default_value = "30s",
        value_parser = parse_duration
    )]
    pub drain_timeout: Duration,

    /// Directory where the last applied snapshot is kept (the file snapshot.bin, replaced
    /// atomically whenever a control plane pushes a new snapshot). At start, a valid cached
    /// snapshot is applied at once, so a proxy restarted while the control plane is down routes
    /// without it; a corrupt file is reported and ignored. The directory is created if missing
    /// and must be writable. Default: no cache.
    #[arg(long, env = "BERTH_PROXY_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Number of worker threads serving requests, each with its own socket of every entrypoint
    /// (SO_REUSEPORT) and its own backend connections. Default: one per CPU core.
    #[arg(long, env = "BERTH_PROXY_WORKERS", value_name = "N")]
    pub workers: Option<NonZeroUsize>,

    /// PEM file of CA certificates to trust, besides the system's, when connecting to backends of
    /// clusters with scheme https. Repeat the flag (or separate with commas) for several files.
    #[arg(
        long,
        env = "BERTH_PROXY_BACKEND_CA",
        value_name = "FILE",
        value_delimiter = ','
    )]
    pub backend_ca: Vec<PathBuf>,

    /// Do not verify the certificates of https backends (Traefik's
    /// serversTransport.insecureSkipVerify), for backends with self-signed certificates. The
    /// connection is still encrypted, but anyone on the path could pose as the backend.
    #[arg(long, env = "BERTH_PROXY_BACKEND_INSECURE_SKIP_VERIFY")]
    pub backend_insecure_skip_verify: bool,

    /// Clients whose X-Forwarded-* headers are believed: IP addresses or CIDR ranges, comma-separated
    /// or repeated (Traefik's `entryPoints.<name>.forwardedHeaders.trustedIPs`, here for every
    /// entrypoint). From a peer in these ranges, typically a load balancer in front of the proxy, the
    /// incoming X-Forwarded-For is kept and the peer appended to it, and the other X-Forwarded-*
    /// headers and X-Real-Ip are kept where set. From any other client they are all dropped and set
    /// anew, so X-Forwarded-For holds only the peer's address. This is also what ipAllowList and
    /// rateLimit read with ipStrategy.depth or ipStrategy.excludedIPs. Default: trust no one.
    #[arg(
        long,
        env = "BERTH_PROXY_TRUSTED_IPS",
        value_name = "CIDR[,CIDR...]",
        value_delimiter = ',',
        value_parser = parse_trusted_ip
    )]
    pub trusted_ips: Vec<String>,

    /// Entrypoints that speak HTTPS: TLS 1.2 or 1.3, HTTP/2 or HTTP/1.1 by ALPN, with the
    /// certificates of --cert-dir chosen by SNI. Names of --entrypoint, comma-separated or repeated
    /// (for example --entrypoint websecure=0.0.0.0:443 --tls websecure). Requests on them carry
    /// X-Forwarded-Proto: https.
    #[arg(
        long,
        env = "BERTH_PROXY_TLS",
        value_name = "NAME[,NAME...]",
        value_delimiter = ','
    )]
    pub tls: Vec<String>,

    /// Directory of the certificates the --tls entrypoints serve: NAME.pem holding a certificate
    /// chain (leaf first) and its private key, or NAME.crt with NAME.key beside it. Each certificate
    /// is served for the DNS names in it (wildcards such as *.example.com included); a client that
    /// sends no SNI, or a name no certificate has, gets the first certificate in file-name order.
    /// Files added, replaced or removed are picked up within --cert-reload-interval, without a
    /// restart; a file that cannot be used is reported in the log and skipped. Required with --tls.
    #[arg(long, env = "BERTH_PROXY_CERT_DIR", value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,

    /// How often --cert-dir is checked for added, replaced or removed files. Examples: 2s, 500ms.
    #[arg(
        long,
        env = "BERTH_PROXY_CERT_RELOAD_INTERVAL",
        value_name = "DURATION",
        default_value = "2s",
        value_parser = parse_duration
    )]
    pub cert_reload_interval: Duration,

    /// How long a client may take to complete the TLS handshake on a --tls entrypoint before the
    /// connection is closed. Examples: 10s, 3s.
    #[arg(
        long,
        env = "BERTH_PROXY_TLS_HANDSHAKE_TIMEOUT",
        value_name = "DURATION",
        default_value = "10s",
        value_parser = parse_duration
    )]
    pub tls_handshake_timeout: Duration,

    /// Largest request head a client may send: request line and headers together (HTTP/1.1), or the
    /// header list (HTTP/2). A larger one is answered 431 Request Header Fields Too Large and, over
    /// HTTP/1.1, the connection is closed. This also bounds the memory a client that never finishes
    /// its headers can hold. At least 8KiB. Examples: 64KiB, 1MiB, 32768.
    #[arg(
        long,
        env = "BERTH_PROXY_MAX_HEADER_BYTES",
        value_name = "SIZE",
        default_value = "64KiB",
        value_parser = parse_header_bytes
    )]
    pub max_header_bytes: usize,

    /// Most header fields a request may have; more are answered 431 and, over HTTP/1.1, the connection
    /// is closed.
    #[arg(
        long,
        env = "BERTH_PROXY_MAX_HEADERS",
        value_name = "N",
        default_value = "100",
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    pub max_headers: u16,

    /// How long an HTTP/1.1 client may take to send a request's line and headers, counted from its
    /// first byte. A client slower than that is disconnected (without an answer), which stops
    /// slow-header ("slowloris") clients from holding connections. Examples: 10s, 30s.
    #[arg(
        long,
        env = "BERTH_PROXY_HEADER_READ_TIMEOUT",
        value_name = "DURATION",
        default_value = "10s",
        value_parser = parse_duration
    )]
    pub header_read_timeout: Duration,

    /// How long a client connection may stay open with no request in progress: a new connection that
    /// sends nothing, an HTTP/1.1 keep-alive connection between requests, an HTTP/2 connection with
    /// no open stream (it gets a GOAWAY). As Traefik's idleTimeout. Keep it longer than the idle
    /// timeout of a load balancer in front, so that the load balancer closes first. Quiet HTTP/2
    /// clients are also pinged every 30s and disconnected if they do not answer within 20s.
    /// Examples: 180s, 1m.
    #[arg(
        long,
        env = "BERTH_PROXY_CLIENT_IDLE_TIMEOUT",
        value_name = "DURATION",
        default_value = "180s",
        value_parser = parse_duration
    )]
    pub client_idle_timeout: Duration,

    /// Most client connections open at once, over all entrypoints; 0 for no limit. A connection
    /// beyond it is closed as soon as it is accepted (the client sees the connection closed and may
    /// retry), and a warning is logged at most once a second. Each open connection may hold up to
    /// about --max-header-bytes of memory while its request head is read.
    #[arg(
        long,
        env = "BERTH_PROXY_MAX_CONNECTIONS",
        value_name = "N",
        default_value = "10000"
    )]
    pub max_connections: usize,

    /// Where to write the access log, one line per request: off, stdout, stderr, or a file path
    /// (created if missing, appended to). Lines are written by a background thread; when it falls
    /// behind, lines are dropped and counted (berth_proxy_access_log_dropped_total), never
    /// making a request wait.
    #[arg(
        long,
        env = "BERTH_PROXY_ACCESS_LOG",
        value_name = "off|stdout|stderr|PATH",
        default_value = "off",
        value_parser = crate::access_log::Target::parse
    )]
    pub access_log: crate::access_log::Target,

    /// Access-log line format: text (client, time, request line, status, bytes, host, route,
    /// service, endpoint, request id, duration) or json (one object per line with Traefik's field
    /// names: ClientAddr, RequestHost, RequestMethod, RequestPath, DownstreamStatus,
    /// DownstreamContentSize, Duration in nanoseconds, RouterName, ServiceName, ServiceAddr…).
    #[arg(
        long,
        env = "BERTH_PROXY_ACCESS_LOG_FORMAT",
        value_name = "FORMAT",
        default_value = "text"
    )]
    pub access_log_format: crate::access_log::Format,

    #[command(flatten)]
    pub log: berth_support::logging::LogArgs,
}

/// The validated configuration the rest of the binary runs on.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub control_planes: Vec<ControlPlaneUrl>,
    /// `--control-plane-ca`, `--control-plane-cert`, `--control-plane-key`, for https:// URLs.
    pub control_plane_tls: Option<crate::stream::ClientTls>,
    pub entrypoints: Vec<EntrypointSpec>,
    pub admin_addr: SocketAddr,
    pub node_id: String,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub backend_idle_timeout: Duration,
    pub drain_grace: Duration,
    pub drain_timeout: Duration,
    pub cache_dir: Option<PathBuf>,
    pub workers: Option<NonZeroUsize>,
    pub backend_ca: Vec<PathBuf>,
    pub backend_insecure_skip_verify: bool,
    /// Peers whose forwarded headers are kept (`--trusted-ips`); empty: no one.
    pub trusted_ips: IpRanges,
    /// `--max-header-bytes`, `--max-headers`, `--header-read-timeout`, `--client-idle-timeout`,
    /// `--max-connections`.
    pub client_limits: crate::limits::ClientLimits,
    /// `--cert-dir` and its companions, when some entrypoint is `--tls`.
    pub tls: Option<crate::tls::Settings>,
    pub access_log: crate::access_log::Target,
    pub access_log_format: crate::access_log::Format,
}

/// One `--entrypoint NAME=ADDRESS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EntrypointSpec {
    pub name: String,
    pub addr: SocketAddr,
    /// Named by `--tls`.
    pub tls: bool,
}

/// One control-plane address, checked to be an `http://host:port` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ControlPlaneUrl(String);

impl ControlPlaneUrl {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ControlPlaneUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Errors found after parsing, when the flags are looked at together.
#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum ConfigError {
    #[error("--entrypoint: the name {0:?} is given more than once")]
    DuplicateEntrypoint(String),
    #[error("--entrypoint {name}={addr}: the address is already used by entrypoint {other:?}")]
    DuplicateAddress {
        name: String,
        addr: SocketAddr,
        other: String,
    },
    #[error("--control-plane: at least one URL is needed")]
    NoControlPlane,
    #[error("{0}")]
    ControlPlaneTls(String),
    #[error("--entrypoint: at least one entrypoint is needed")]
    NoEntrypoint,
    #[error("--node-id: must not be empty")]
    EmptyNodeId,
    #[error("--trusted-ips: {0}")]
    TrustedIps(String),
    #[error("--tls {0}: there is no --entrypoint of that name")]
    UnknownTlsEntrypoint(String),
    #[error("--tls needs --cert-dir: the directory of the certificates to serve")]
    TlsWithoutCertDir,
    #[error("--cert-dir is set but no entrypoint is named in --tls (for example --tls websecure)")]
    CertDirWithoutTls,
}

impl Cli {
    /// Checks what single-value parsers cannot and fills in defaults that depend on the machine.
    pub(crate) fn into_config(mut self) -> Result<Config, ConfigError> {
        if self.control_plane.is_empty() {
            return Err(ConfigError::NoControlPlane);
        }
        if self.entrypoints.is_empty() {
            return Err(ConfigError::NoEntrypoint);
        }
        for (i, ep) in self.entrypoints.iter().enumerate() {
            if let Some(other) = self.entrypoints[..i].iter().find(|o| o.name == ep.name) {
                return Err(ConfigError::DuplicateEntrypoint(other.name.clone()));
            }
            // Port 0 asks the kernel for a free port, so it may repeat.
            let same_addr = |o: &&EntrypointSpec| o.addr == ep.addr && ep.addr.port() != 0;
            if let Some(other) = self.entrypoints[..i].iter().find(same_addr) {
                return Err(ConfigError::DuplicateAddress {
                    name: ep.name.clone(),
                    addr: ep.addr,
                    other: other.name.clone(),
                });
            }
        }
        let tls = self.tls_settings()?;
        let control_plane_tls = self.control_plane_tls()?;
        let node_id = match self.node_id {
            Some(id) if id.trim().is_empty() => return Err(ConfigError::EmptyNodeId),
            Some(id) => id,
            None => host_name(),
        };
        Ok(Config {
            control_planes: self.control_plane,
            control_plane_tls,
            entrypoints: self.entrypoints,
            admin_addr: self.admin_addr,
            node_id,
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            backend_idle_timeout: self.backend_idle_timeout,
            drain_grace: self.drain_grace,
            drain_timeout: self.drain_timeout,
            cache_dir: self.cache_dir,
            workers: self.workers,
            backend_ca: self.backend_ca,
            backend_insecure_skip_verify: self.backend_insecure_skip_verify,
            trusted_ips: IpRanges::parse(&self.trusted_ips).map_err(ConfigError::TrustedIps)?,
            client_limits: crate::limits::ClientLimits {
                max_header_bytes: self.max_header_bytes,
                max_headers: usize::from(self.max_headers),
                header_read_timeout: self.header_read_timeout,
                idle_timeout: self.client_idle_timeout,
                max_connections: (self.max_connections > 0).then_some(self.max_connections),
            },
            tls,
            access_log: self.access_log,
            access_log_format: self.access_log_format,
        })
    }
}

impl Cli {
    /// Marks the `--tls` entrypoints and checks `--cert-dir` goes with them.
    fn tls_settings(&mut self) -> Result<Option<crate::tls::Settings>, ConfigError> {
        for name in self.tls.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
            let entrypoint = self.entrypoints.iter_mut().find(|e| e.name == name);
            match entrypoint {
                Some(entrypoint) => entrypoint.tls = true,
                None => return Err(ConfigError::UnknownTlsEntrypoint(name.to_owned())),
            }
        }
        let any_tls = self.entrypoints.iter().any(|e| e.tls);
        match (&self.cert_dir, any_tls) {
            (None, false) => Ok(None),
            (None, true) => Err(ConfigError::TlsWithoutCertDir),
            (Some(_), false) => Err(ConfigError::CertDirWithoutTls),
            (Some(dir), true) => Ok(Some(crate::tls::Settings {
                cert_dir: dir.clone(),
                reload_interval: self.cert_reload_interval,
                handshake_timeout: self.tls_handshake_timeout,
            })),
        }
    }
}

/// This machine's host name (the kernel's, else `$HOSTNAME`).
pub(crate) fn host_name() -> String {
    berth_support::host_name("berth-proxy")
}

/// Parses `NAME=ADDRESS`.
pub(crate) fn parse_entrypoint(s: &str) -> Result<EntrypointSpec, String> {
    let Some((name, addr)) = s.split_once('=') else {
        return Err(format!(
            "expected NAME=ADDRESS (for example http=0.0.0.0:80), but {s:?} has no address"
        ));
    };
    let (name, addr) = (name.trim(), addr.trim());
    if name.is_empty() {
        return Err(format!("expected NAME=ADDRESS, but the name in {s:?} is empty"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(format!(
            "entrypoint name {name:?} may only contain letters, digits, '-', '_' and '.'"
        ));
    }
    if addr.is_empty() {
        return Err(format!(
            "expected NAME=ADDRESS (for example {name}=0.0.0.0:80), but the address is empty"
        ));
    }
    let addr = addr.parse::<SocketAddr>().map_err(|_| {
        format!("{addr:?} is not an IP address with a port (for example 0.0.0.0:80 or [::]:8080)")
    })?;
    Ok(EntrypointSpec {
        name: name.to_owned(),
        addr,
        tls: false,
    })
}

/// Checks one `--trusted-ips` item: an IP address or a CIDR range (as Traefik's `trustedIPs`).
pub(crate) fn parse_trusted_ip(s: &str) -> Result<String, String> {
    let s = s.trim();
    IpRanges::parse(&[s.to_owned()])?;
    Ok(s.to_owned())
}

impl Cli {
    /// The TLS settings for https:// control planes: a CA is required when one is https, and
    /// TLS flags without any https control plane are a mistake worth stopping for.
    fn control_plane_tls(&self) -> Result<Option<crate::stream::ClientTls>, ConfigError> {
        let https = self
            .control_plane
            .iter()
            .any(|u| u.as_str().starts_with("https://"));
        let identity = self
            .control_plane_cert
            .clone()
            .zip(self.control_plane_key.clone());
        match (&self.control_plane_ca, https) {
            (Some(ca), true) => Ok(Some(crate::stream::ClientTls {
                ca: ca.clone(),
                identity,
            })),
            (None, true) => Err(ConfigError::ControlPlaneTls(
                "--control-plane: an https:// control plane needs --control-plane-ca, the CA that signed its certificate"
                    .into(),
            )),
            (Some(_), false) => Err(ConfigError::ControlPlaneTls(
                "--control-plane-ca is set but no --control-plane URL is https://".into(),
            )),
            (None, false) if identity.is_some() => Err(ConfigError::ControlPlaneTls(
                "--control-plane-cert is set but no --control-plane URL is https://".into(),
            )),
            (None, false) => Ok(None),
        }
    }
}

/// Parses a control-plane URL: `http://host:port` or `https://host:port`, optionally with a
/// trailing `/`.
pub(crate) fn parse_control_plane(s: &str) -> Result<ControlPlaneUrl, String> {
    let s = s.trim();
    let uri = s
        .parse::<http::Uri>()
        .map_err(|e| format!("{s:?} is not a URL ({e}); expected for example http://127.0.0.1:18000"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        Some(other) => {
            return Err(format!(
                "{s:?}: unsupported scheme {other:?}, expected http:// or https://"
            ))
        }
        None => {
            return Err(format!(
                "{s:?} has no scheme; expected for example http://127.0.0.1:18000"
            ))
        }
    }
    match uri.authority() {
        Some(a) if !a.host().is_empty() => {}
        _ => {
            return Err(format!(
                "{s:?} has no host; expected for example http://127.0.0.1:18000"
            ))
        }
    }
    if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
        return Err(format!(
            "{s:?}: a control-plane URL has no path; expected for example http://127.0.0.1:18000"
        ));
    }
    Ok(ControlPlaneUrl(s.trim_end_matches('/').to_owned()))
}

/// Parses `--max-header-bytes`: a number of bytes, or with a unit KiB or MiB (also K/KB, M/MB, as
/// multiples of 1024), at least 8KiB.
pub(crate) fn parse_header_bytes(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let help = "expected a size such as 65536, 64KiB or 1MiB";
    let value: usize = number
        .parse()
        .map_err(|_| format!("{s:?} is not a size: {help}"))?;
    let multiplier = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        other => return Err(format!("{s:?} has an unknown unit {other:?}: {help}")),
    };
    let bytes = value
        .checked_mul(multiplier)
        .filter(|b| u32::try_from(*b).is_ok())
        .ok_or_else(|| format!("{s:?} is too large: at most 4GiB"))?;
    if bytes < crate::limits::MIN_HEADER_BYTES {
        return Err(format!("{s:?} is too small: at least 8KiB"));
    }
    Ok(bytes)
}

/// Parses a duration such as `500ms`, `2s`, `1.5s`, `1m` or `1h`. Zero is rejected: a zero
/// timeout would fail everything.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let duration = parse_duration_or_zero(s)?;
    if duration.is_zero() {
        return Err(format!("{s:?}: must be greater than zero"));
    }
    Ok(duration)
}

/// Like [`parse_duration`], for a wait that may be skipped: `0` (no unit needed) is zero.
pub(crate) fn parse_duration_or_zero(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let help = "expected a number followed by a unit: ms, s, m or h (for example 500ms, 2s, 1m)";
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration: {help}"))?;
    let seconds_per_unit = match unit.trim() {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "" => return Err(format!("{s:?} has no unit: {help}")),
        other => return Err(format!("{s:?} has an unknown unit {other:?}: {help}")),
    };
    Duration::try_from_secs_f64(value * seconds_per_unit)
        .map_err(|_| format!("{s:?} is out of range: {help}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("berth-proxy").chain(args.iter().copied()))
    }

    fn error_text(args: &[&str]) -> String {
        match parse(args) {
            Ok(cli) => panic!("expected an error for {args:?}, got {cli:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults() {
        let cfg = parse(&[])
            .expect("defaults parse")
            .into_config()
            .expect("defaults are valid");
        assert_eq!(
            cfg.control_planes,
            vec![ControlPlaneUrl("http://127.0.0.1:18000".into())]
        );
        assert_eq!(
            cfg.entrypoints,
            vec![EntrypointSpec {
                name: "http".into(),
                addr: "0.0.0.0:80".parse().unwrap(),
                tls: false,
            }]
        );
        assert_eq!(cfg.admin_addr, "127.0.0.1:18081".parse().unwrap());
        assert_eq!(cfg.connect_timeout, Duration::from_secs(2));
        assert_eq!(cfg.request_timeout, Duration::from_secs(30));
        assert_eq!(cfg.backend_idle_timeout, Duration::from_secs(90));
        assert_eq!(cfg.drain_grace, Duration::from_secs(5));
        assert_eq!(cfg.drain_timeout, Duration::from_secs(30));
        assert_eq!(cfg.cache_dir, None);
        assert_eq!(cfg.workers, None);
        assert!(!cfg.node_id.is_empty());
        assert_eq!(
            cfg.client_limits,
            crate::limits::ClientLimits {
                max_header_bytes: 65536,
                max_headers: 100,
                header_read_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(180),
                max_connections: Some(10000),
            }
        );
    }

    #[test]
    fn repeated_and_comma_separated_values() {
        let cfg = parse(&[
            "--entrypoint",
            "http=127.0.0.1:8080",
            "--entrypoint",
            "web=127.0.0.1:8081,admin-ish=[::1]:8082",
            "--control-plane",
            "http://10.0.0.1:18000,http://cp.example:18000/",
            "--node-id",
            "edge-1",
            "--connect-timeout",
            "500ms",
            "--request-timeout",
            "1m",
        ])
        .expect("parses")
        .into_config()
        .expect("valid");
        let names: Vec<_> = cfg.entrypoints.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["http", "web", "admin-ish"]);
        assert_eq!(cfg.control_planes[1].as_str(), "http://cp.example:18000");
        assert_eq!(cfg.node_id, "edge-1");
        assert_eq!(cfg.connect_timeout, Duration::from_millis(500));
        assert_eq!(cfg.request_timeout, Duration::from_secs(60));
    }

    #[test]
    fn entrypoint_without_address_names_flag_and_value() {
        let text = error_text(&["--entrypoint", "http"]);
        assert!(text.contains("--entrypoint"), "{text}");
        assert!(text.contains("'http'"), "{text}");
        assert!(text.contains("no address"), "{text}");
    }

    #[test]
    fn entrypoint_with_bad_address() {
        let text = error_text(&["--entrypoint", "http=localhost:80"]);
        assert!(
            text.contains("--entrypoint") && text.contains("localhost:80"),
            "{text}"
        );
        let text = error_text(&["--entrypoint", "http=1.2.3.4"]);
        assert!(text.contains("not an IP address with a port"), "{text}");
        let text = error_text(&["--entrypoint", "=1.2.3.4:80"]);
        assert!(text.contains("name"), "{text}");
        let text = error_text(&["--entrypoint", "http="]);
        assert!(text.contains("address is empty"), "{text}");
    }

    #[test]
    fn duplicate_entrypoints() {
        let err = parse(&["--entrypoint", "a=127.0.0.1:1", "--entrypoint", "a=127.0.0.1:2"])
            .expect("parses")
            .into_config()
            .expect_err("duplicate name");
        assert_eq!(err, ConfigError::DuplicateEntrypoint("a".into()));
        let err = parse(&["--entrypoint", "a=127.0.0.1:1", "--entrypoint", "b=127.0.0.1:1"])
            .expect("parses")
            .into_config()
            .expect_err("duplicate address");
        assert!(
            err.to_string().contains("already used by entrypoint \"a\""),
            "{err}"
        );
        parse(&["--entrypoint", "a=127.0.0.1:0", "--entrypoint", "b=127.0.0.1:0"])
            .expect("parses")
            .into_config()
            .expect("port 0 may repeat");
    }

    #[test]
    fn bad_control_plane_urls() {
        for (value, expect) in [
            ("127.0.0.1:18000", "no scheme"),
            ("ftp://cp:18000", "unsupported scheme"),
            ("http://", "not a URL"),
            ("http://cp:18000/v1", "no path"),
            ("http://exa mple:1", "not a URL"),
        ] {
            let text = error_text(&["--control-plane", value]);
            assert!(text.contains("--control-plane"), "{value}: {text}");
            assert!(text.contains(expect), "{value}: expected {expect:?} in {text}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("2").unwrap_err().contains("no unit"));
        assert!(parse_duration("2 days").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("fast").unwrap_err().contains("not a duration"));
        assert!(parse_duration("0s").unwrap_err().contains("greater than zero"));
        let text = error_text(&["--request-timeout", "soon"]);
        assert!(
            text.contains("--request-timeout") && text.contains("soon"),
            "{text}"
        );
    }

    #[test]
    fn backend_tls_flags() {
        let cfg = parse(&[]).expect("parses").into_config().expect("valid");
        assert!(cfg.backend_ca.is_empty() && !cfg.backend_insecure_skip_verify);
        let cfg = parse(&[
            "--backend-ca",
            "/a.pem,/b.pem",
            "--backend-ca",
            "/c.pem",
            "--backend-insecure-skip-verify",
        ])
        .expect("parses")
        .into_config()
        .expect("valid");
        assert_eq!(
            cfg.backend_ca,
            [
                PathBuf::from("/a.pem"),
                PathBuf::from("/b.pem"),
                PathBuf::from("/c.pem")
            ]
        );
        assert!(cfg.backend_insecure_skip_verify);
    }

    #[test]
    fn trusted_ips() {
        let cfg = parse(&[]).expect("parses").into_config().expect("valid");
        assert!(
            !cfg.trusted_ips.contains("127.0.0.1".parse().unwrap()),
            "trust no one by default"
        );
        let cfg = parse(&[
            "--trusted-ips",
            "10.0.0.0/8, 192.0.2.7",
            "--trusted-ips",
            "2001:db8::/32",
        ])
        .expect("parses")
        .into_config()
        .expect("valid");
        for ip in ["10.1.2.3", "192.0.2.7", "2001:db8::1", "::ffff:10.0.0.1"] {
            assert!(cfg.trusted_ips.contains(ip.parse().unwrap()), "{ip}");
        }
        assert!(!cfg.trusted_ips.contains("192.0.2.8".parse().unwrap()));
        let text = error_text(&["--trusted-ips", "10.0.0.0/8,10.0.0.0/33"]);
        assert!(
            text.contains("--trusted-ips") && text.contains("10.0.0.0/33"),
            "{text}"
        );
        let text = error_text(&["--trusted-ips", "lb.example"]);
        assert!(text.contains("neither an IP address nor a CIDR range"), "{text}");
    }

    #[test]
    fn lifecycle_flags() {
        let cli = parse(&[
            "--cache-dir",
            "/var/cache/berth",
            "--drain-grace",
            "0",
            "--drain-timeout",
            "1m",
            "--workers",
            "3",
            "--log-level",
            "debug",
            "--log-format",
            "json",
        ])
        .expect("parses");
        assert_eq!(cli.log.log_level, "debug");
        assert_eq!(cli.log.log_format, berth_support::logging::LogFormat::Json);
        let cfg = cli.into_config().expect("valid");
        assert_eq!(cfg.cache_dir, Some(PathBuf::from("/var/cache/berth")));
        assert_eq!(cfg.drain_grace, Duration::ZERO);
        assert_eq!(cfg.drain_timeout, Duration::from_secs(60));
        assert_eq!(cfg.workers, NonZeroUsize::new(3));
        assert_eq!(
            parse(&["--drain-grace", "1500ms"]).expect("parses").drain_grace,
            Duration::from_millis(1500)
        );
        let text = error_text(&["--workers", "0"]);
        assert!(text.contains("--workers"), "{text}");
        let text = error_text(&["--drain-timeout", "0"]);
        assert!(
            text.contains("--drain-timeout") && text.contains("greater than zero"),
            "{text}"
        );
        let text = error_text(&["--drain-grace", "soon"]);
        assert!(text.contains("--drain-grace"), "{text}");
    }

    #[test]
    fn tls_flags() {
        let base = ["--entrypoint", "web=127.0.0.1:80,websecure=127.0.0.1:443"];
        let cfg = parse(&[&base[..], &["--tls", "websecure", "--cert-dir", "/certs"]].concat())
            .expect("parses")
            .into_config()
            .expect("valid");
        let tls: Vec<_> = cfg.entrypoints.iter().map(|e| (e.name.as_str(), e.tls)).collect();
        assert_eq!(tls, [("web", false), ("websecure", true)]);
        let settings = cfg.tls.expect("tls settings");
        assert_eq!(settings.cert_dir, PathBuf::from("/certs"));
        assert_eq!(settings.reload_interval, Duration::from_secs(2));
        assert_eq!(settings.handshake_timeout, Duration::from_secs(10));
        assert!(parse(&base)
            .expect("parses")
            .into_config()
            .expect("valid")
            .tls
            .is_none());

        let err = parse(&[&base[..], &["--tls", "websecure"]].concat())
            .expect("parses")
            .into_config()
            .expect_err("no --cert-dir");
        assert!(err.to_string().contains("--tls needs --cert-dir"), "{err}");
        let err = parse(&[&base[..], &["--tls", "https", "--cert-dir", "/c"]].concat())
            .expect("parses")
            .into_config()
            .expect_err("unknown entrypoint");
        assert_eq!(
            err.to_string(),
            "--tls https: there is no --entrypoint of that name"
        );
        let err = parse(&[&base[..], &["--cert-dir", "/c"]].concat())
            .expect("parses")
            .into_config()
            .expect_err("no --tls");
        assert!(
            err.to_string().contains("--cert-dir is set but no entrypoint"),
            "{err}"
        );
        let text = error_text(&["--cert-reload-interval", "0s"]);
        assert!(text.contains("--cert-reload-interval"), "{text}");
    }

    #[test]
    fn client_limit_flags() {
        let cfg = parse(&[
            "--max-header-bytes",
            "1MiB",
            "--max-headers",
            "20",
            "--header-read-timeout",
            "2s",
            "--client-idle-timeout",
            "1m",
            "--max-connections",
            "0",
        ])
        .expect("parses")
        .into_config()
        .expect("valid");
        assert_eq!(cfg.client_limits.max_header_bytes, 1 << 20);
        assert_eq!(cfg.client_limits.max_headers, 20);
        assert_eq!(cfg.client_limits.header_read_timeout, Duration::from_secs(2));
        assert_eq!(cfg.client_limits.idle_timeout, Duration::from_secs(60));
        assert_eq!(cfg.client_limits.max_connections, None);
        assert_eq!(parse_header_bytes("32768"), Ok(32768));
        assert_eq!(parse_header_bytes("64k"), Ok(65536));
        let text = error_text(&["--max-header-bytes", "1KiB"]);
        assert!(
            text.contains("--max-header-bytes") && text.contains("at least 8KiB"),
            "{text}"
        );
        let text = error_text(&["--max-header-bytes", "64 parsecs"]);
        assert!(text.contains("unknown unit"), "{text}");
        let text = error_text(&["--max-headers", "0"]);
        assert!(text.contains("--max-headers"), "{text}");
    }

    #[test]
    fn empty_node_id() {
        let err = parse(&["--node-id", " "])
            .expect("parses")
            .into_config()
            .expect_err("empty");
        assert_eq!(err, ConfigError::EmptyNodeId);
    }
}
