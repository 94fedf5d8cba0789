//! How to reach Consul: addresses, ACL token, datacenter, read consistency and TLS, and the
//! standard `CONSUL_*` environment variables that set them.
//!
//! A [`Config`] is plain data: building it reads no file and opens no connection.
//! [`crate::Client::from_config`] validates it, reads the token file and the TLS files once, and
//! fails naming the setting and the file that was wrong. The binaries fill a `Config` from their
//! flags; [`Config::from_env`] reads the variables Consul's own CLI reads, for a binary that has
//! no flag of its own for them (flags, when a binary has them, take precedence).
//!
//! | variable | field |
//! | --- | --- |
//! | `CONSUL_HTTP_ADDR` | [`Config::addresses`] (Berth also takes a comma-separated list) |
//! | `CONSUL_HTTP_TOKEN` | [`Config::token`] |
//! | `CONSUL_HTTP_TOKEN_FILE` | [`Config::token_file`] |
//! | `CONSUL_HTTP_SSL` | [`Config::https`] (https for an address written without a scheme) |
//! | `CONSUL_HTTP_SSL_VERIFY` | [`TlsConfig::verify`] |
//! | `CONSUL_CACERT` | [`TlsConfig::ca_cert`] |
//! | `CONSUL_CLIENT_CERT` | [`TlsConfig::client_cert`] |
//! | `CONSUL_CLIENT_KEY` | [`TlsConfig::client_key`] |
//! | `CONSUL_TLS_SERVER_NAME` | [`TlsConfig::server_name`] |
//!
//! Booleans are read as Go's `strconv.ParseBool` reads them ([`parse_go_bool`]), as Consul does.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use crate::Error;

/// The standard variable names, for flags that want to name them (`env = ...`) and for messages.
pub mod env {
    pub const HTTP_ADDR: &str = "CONSUL_HTTP_ADDR";
    pub const HTTP_TOKEN: &str = "CONSUL_HTTP_TOKEN";
    pub const HTTP_TOKEN_FILE: &str = "CONSUL_HTTP_TOKEN_FILE";
    pub const HTTP_SSL: &str = "CONSUL_HTTP_SSL";
    pub const HTTP_SSL_VERIFY: &str = "CONSUL_HTTP_SSL_VERIFY";
    pub const CACERT: &str = "CONSUL_CACERT";
    pub const CLIENT_CERT: &str = "CONSUL_CLIENT_CERT";
    pub const CLIENT_KEY: &str = "CONSUL_CLIENT_KEY";
    pub const TLS_SERVER_NAME: &str = "CONSUL_TLS_SERVER_NAME";
}

/// The address used when none is configured: the local agent, as Consul's CLI assumes.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:8500";

/// Everything [`crate::Client::from_config`] needs. `Config::default()` is the local agent over
/// plain HTTP, without a token.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// One or more Consul HTTP API addresses (`http://host:port`, `https://host:port`, or
    /// `host:port`, whose scheme is then given by [`Config::https`]). Requests go to one of them
    /// at a time; after a transport error, a TLS failure, a 5xx or a 429 the next request goes to
    /// the next address. Use [`Config::parse_addresses`] for a comma-separated list.
    pub addresses: Vec<String>,
    /// ACL token, sent as `X-Consul-Token`. An empty token counts as none.
    pub token: Option<String>,
    /// A file holding the ACL token, read once when the client is built (surrounding whitespace
    /// trimmed). When set it wins over [`Config::token`], as in Consul's own client.
    pub token_file: Option<PathBuf>,
    /// Datacenter to read from (`dc=` on catalog and health reads); the agent's own when unset.
    pub datacenter: Option<String>,
    /// Consistency asked of Consul on catalog and health reads.
    pub read_mode: ReadMode,
    /// Use https for addresses written without a scheme (`CONSUL_HTTP_SSL`).
    pub https: bool,
    /// TLS settings for https addresses.
    pub tls: TlsConfig,
    /// Idle keep-alive connections kept per Consul address.
    pub max_idle_connections: usize,
    /// How long an idle keep-alive connection is kept.
    pub idle_timeout: Duration,
    /// How long establishing a connection (TCP, and TLS for https) may take.
    pub connect_timeout: Duration,
}

/// How consistent catalog and health reads must be. See Consul's "Consistency Modes".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReadMode {
    /// Consul's default: answered by the leader, which may rarely be stale for a moment after a
    /// leader change.
    #[default]
    Default,
    /// `?consistent`: the leader first confirms it is still the leader. Slower, never stale.
    Consistent,
    /// `?stale`: any server answers, possibly a little behind. Spreads the load over the servers
    /// and keeps working without a leader.
    Stale,
}

impl ReadMode {
    /// The query parameter this mode adds, if any.
    pub(crate) fn query_param(self) -> Option<&'static str> {
        match self {
            ReadMode::Default => None,
            ReadMode::Consistent => Some("consistent"),
            ReadMode::Stale => Some("stale"),
        }
    }
}

/// TLS settings for https addresses. `TlsConfig::default()` verifies Consul's certificate
/// against the system's CA certificates and presents no client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM file with the CA certificate(s) Consul's certificate must chain to (one or more); the
    /// system's CA certificates when unset.
    pub ca_cert: Option<PathBuf>,
    /// PEM file with the client certificate (and any intermediates) to present, for a Consul
    /// with `verify_incoming`. Needs [`TlsConfig::client_key`].
    pub client_cert: Option<PathBuf>,
    /// PEM file with the client certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub client_key: Option<PathBuf>,
    /// Verify Consul's certificate. `false` accepts any certificate: see [`Config::warnings`].
    pub verify: bool,
    /// The name Consul's certificate must be valid for, when it is not the address's host (for
    /// example `server.dc1.consul` when connecting by IP address).
    pub server_name: Option<String>,
}

impl Default for TlsConfig {
    fn default() -> TlsConfig {
        TlsConfig {
            ca_cert: None,
            client_cert: None,
            client_key: None,
            verify: true,
            server_name: None,
        }
    }
}

impl TlsConfig {
    /// True when anything differs from the default (for the warning about unused settings).
    fn is_set(&self) -> bool {
        *self != TlsConfig::default()
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            addresses: vec![DEFAULT_ADDRESS.to_string()],
            token: None,
            token_file: None,
            datacenter: None,
            read_mode: ReadMode::Default,
            https: false,
            tls: TlsConfig::default(),
            max_idle_connections: 8,
            idle_timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(3),
        }
    }
}

/// The token is never printed.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("addresses", &self.addresses)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_file", &self.token_file)
            .field("datacenter", &self.datacenter)
            .field("read_mode", &self.read_mode)
            .field("https", &self.https)
            .field("tls", &self.tls)
            .field("max_idle_connections", &self.max_idle_connections)
            .field("idle_timeout", &self.idle_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl Config {
    /// A config for one address and an optional token, everything else default.
    pub fn with_address(address: &str, token: Option<String>) -> Config {
        Config {
            addresses: vec![address.to_string()],
            token,
            ..Config::default()
        }
    }

    /// Splits a comma-separated list of addresses (`a:8500, https://b:8501`), trimming blanks
    /// and skipping empty entries, and checks that each one is a usable address. Schemes are left
    /// as written (see [`Config::https`]).
    pub fn parse_addresses(list: &str) -> Result<Vec<String>, Error> {
        let addresses: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect();
        if addresses.is_empty() {
            return Err(Error::InvalidAddress {
                address: list.to_string(),
                reason: "no address given".into(),
            });
        }
        for address in &addresses {
            parse_address(address, false)?;
        }
        Ok(addresses)
    }

    /// The standard `CONSUL_*` variables of this process (see the module documentation); unset
    /// ones keep [`Config::default`]'s values.
    pub fn from_env() -> Result<Config, Error> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`Config::from_env`], reading variables through `lookup` (for tests, and for
    /// binaries that read their environment once). Empty variables count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, Error> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut config = Config::default();
        if let Some(list) = get(env::HTTP_ADDR) {
            config.addresses = Config::parse_addresses(&list).map_err(|e| Error::Setting {
                name: env::HTTP_ADDR,
                value: list.clone(),
                reason: e.to_string(),
            })?;
        }
        config.token = get(env::HTTP_TOKEN);
        config.token_file = get(env::HTTP_TOKEN_FILE).map(PathBuf::from);
        if let Some(value) = get(env::HTTP_SSL) {
            config.https = go_bool_setting(env::HTTP_SSL, &value)?;
        }
        if let Some(value) = get(env::HTTP_SSL_VERIFY) {
            config.tls.verify = go_bool_setting(env::HTTP_SSL_VERIFY, &value)?;
        }
        config.tls.ca_cert = get(env::CACERT).map(PathBuf::from);
        config.tls.client_cert = get(env::CLIENT_CERT).map(PathBuf::from);
        config.tls.client_key = get(env::CLIENT_KEY).map(PathBuf::from);
        config.tls.server_name = get(env::TLS_SERVER_NAME);
        Ok(config)
    }

    /// The addresses as URLs, each with its scheme resolved.
    pub(crate) fn urls(&self) -> Result<Vec<Url>, Error> {
        if self.addresses.is_empty() {
            return Err(Error::InvalidAddress {
                address: String::new(),
                reason: "no address given".into(),
            });
        }
        self.addresses
            .iter()
            .map(|a| parse_address(a, self.https))
            .collect()
    }

    /// Things an operator should hear about this configuration, one sentence each, for the
    /// binary to log as warnings at start: verification turned off, TLS settings that no https
    /// address uses.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let https = self
            .urls()
            .map(|urls| urls.iter().any(|u| u.scheme() == "https"))
            .unwrap_or(false);
        if https && !self.tls.verify {
            warnings.push(
                "TLS verification of Consul's certificate is off (CONSUL_HTTP_SSL_VERIFY=false): \
                 anyone between Berth and Consul can read and change what Berth sees"
                    .to_string(),
            );
        }
        if !https && self.tls.is_set() {
            warnings.push(format!(
                "TLS settings are given but no Consul address uses https ({}): they are not used; \
                 write the address as https://HOST:PORT or set CONSUL_HTTP_SSL=true",
                self.addresses.join(", ")
            ));
        }
        warnings
    }
}

/// One address, with `http` (or `https` when `https`) added when it has no scheme.
pub(crate) fn parse_address(address: &str, https: bool) -> Result<Url, Error> {
    let invalid = |reason: String| Error::InvalidAddress {
        address: address.to_string(),
        reason,
    };
    let with_scheme = if address.contains("://") {
        address.to_string()
    } else if https {
        format!("https://{address}")
    } else {
        format!("http://{address}")
    };
    let url = Url::parse(&with_scheme).map_err(|e| invalid(e.to_string()))?;
    match url.scheme() {
        "http" | "https" => {}
        "unix" => {
            return Err(invalid(
                "unix sockets are not supported: give http://HOST:PORT or https://HOST:PORT".into(),
            ))
        }
        other => return Err(invalid(format!("scheme {other:?} is not http or https"))),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("no host".into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "credentials in the address are not supported: use the ACL token".into(),
        ));
    }
    Ok(url)
}

pub use berth_support::parse_go_bool;

fn go_bool_setting(name: &'static str, value: &str) -> Result<bool, Error> {
    parse_go_bool(value.trim()).map_err(|reason| Error::Setting {
        name,
        value: value.to_string(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| vars.get(name).cloned()
    }

    #[test]
    fn parses_address_lists() {
        assert_eq!(
            Config::parse_addresses("127.0.0.1:8500").expect("valid"),
            ["127.0.0.1:8500"]
        );
        assert_eq!(
            Config::parse_addresses(" a:1, https://b:2 ,,http://[::1]:3,").expect("valid"),
            ["a:1", "https://b:2", "http://[::1]:3"]
        );
        for bad in [
            "",
            " , ",
            "ftp://a:1",
            "a:notaport",
            "unix:///tmp/consul.sock",
            "http://u:p@a:1",
        ] {
            let err = Config::parse_addresses(bad).expect_err(bad);
            assert!(matches!(err, Error::InvalidAddress { .. }), "{bad}: {err}");
        }
        let err = Config::parse_addresses("a:1,b:x").expect_err("bad port");
        assert!(err.to_string().contains("\"b:x\""), "{err}");
    }

    #[test]
    fn scheme_less_addresses_follow_the_https_setting() {
        let mut config = Config {
            addresses: vec!["a:8501".into(), "http://b:8500".into()],
            ..Config::default()
        };
        let schemes = |c: &Config| -> Vec<String> {
            c.urls()
                .expect("valid")
                .iter()
                .map(|u| u.scheme().to_string())
                .collect()
        };
        assert_eq!(schemes(&config), ["http", "http"]);
        config.https = true;
        assert_eq!(schemes(&config), ["https", "http"]);
        config.addresses.clear();
        assert!(config.urls().is_err());
    }

    #[test]
    fn reads_the_standard_variables() {
        let config = Config::from_lookup(lookup(&[
            ("CONSUL_HTTP_ADDR", "10.0.0.1:8501,10.0.0.2:8501"),
            ("CONSUL_HTTP_TOKEN", "secret"),
            ("CONSUL_HTTP_TOKEN_FILE", "/run/token"),
            ("CONSUL_HTTP_SSL", "true"),
            ("CONSUL_HTTP_SSL_VERIFY", "f"),
            ("CONSUL_CACERT", "/x/ca.pem"),
            ("CONSUL_CLIENT_CERT", "/x/c.pem"),
            ("CONSUL_CLIENT_KEY", "/x/k.pem"),
            ("CONSUL_TLS_SERVER_NAME", "server.dc1.consul"),
        ]))
        .expect("valid");
        assert_eq!(config.addresses, ["10.0.0.1:8501", "10.0.0.2:8501"]);
        assert_eq!(config.token.as_deref(), Some("secret"));
        assert_eq!(config.token_file, Some(PathBuf::from("/run/token")));
        assert!(config.https);
        assert_eq!(
            config.tls,
            TlsConfig {
                ca_cert: Some("/x/ca.pem".into()),
                client_cert: Some("/x/c.pem".into()),
                client_key: Some("/x/k.pem".into()),
                verify: false,
                server_name: Some("server.dc1.consul".into()),
            }
        );
        assert_eq!(
            config.urls().expect("valid")[1].as_str(),
            "https://10.0.0.2:8501/"
        );
    }

    #[test]
    fn unset_and_empty_variables_keep_the_defaults() {
        assert_eq!(Config::from_lookup(|_| None).expect("valid"), Config::default());
        let config = Config::from_lookup(lookup(&[
            ("CONSUL_HTTP_ADDR", ""),
            ("CONSUL_HTTP_TOKEN", ""),
            ("CONSUL_HTTP_SSL_VERIFY", " "),
        ]))
        .expect("valid");
        assert_eq!(config, Config::default());
    }

    #[test]
    fn bad_variables_are_named() {
        let err =
            Config::from_lookup(lookup(&[("CONSUL_HTTP_SSL_VERIFY", "maybe")])).expect_err("not a boolean");
        assert_eq!(
            err.to_string(),
            "CONSUL_HTTP_SSL_VERIFY=\"maybe\": \"maybe\" is not a boolean (true or false)"
        );
        let err = Config::from_lookup(lookup(&[("CONSUL_HTTP_ADDR", "ftp://x")])).expect_err("bad");
        assert!(
            err.to_string().starts_with("CONSUL_HTTP_ADDR=\"ftp://x\""),
            "{err}"
        );
        for (value, want) in [
            ("1", true),
            ("T", true),
            ("True", true),
            ("0", false),
            ("F", false),
        ] {
            assert_eq!(parse_go_bool(value), Ok(want), "{value}");
        }
        assert!(parse_go_bool("yes").is_err());
    }

    #[test]
    fn warns_about_turned_off_verification_and_unused_tls() {
        let mut config = Config::with_address("https://c:8501", None);
        assert!(config.warnings().is_empty());
        config.tls.verify = false;
        assert_eq!(config.warnings().len(), 1);
        assert!(
            config.warnings()[0].contains("verification"),
            "{:?}",
            config.warnings()
        );
        let mut config = Config::with_address("c:8500", None);
        config.tls.ca_cert = Some("/x/ca.pem".into());
        assert!(config.warnings()[0].contains("no Consul address uses https"));
        config.https = true;
        assert!(config.warnings().is_empty());
    }

    #[test]
    fn debug_hides_the_token() {
        let config = Config::with_address("c:8500", Some("very-secret".into()));
        assert!(!format!("{config:?}").contains("very-secret"));
    }
}
