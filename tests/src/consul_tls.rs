//! A real Consul serving its HTTP API over HTTPS, with certificates generated for the test.
//!
//! [`Pki`] writes a throw-away CA, a server certificate for `127.0.0.1` / `localhost` /
//! `server.dc1.consul` signed by it, a client certificate signed by it, and a second, unrelated
//! CA (to play a wrong `CONSUL_CACERT`), all as PEM files in a scratch directory. [`TlsConsul`]
//! starts a [`Consul`] dev agent with those files and an https port, optionally requiring client
//! certificates there (`verify_incoming_https`).
//!
//! The agent keeps its plain HTTP port too, for the test's own reads and writes through
//! [`Consul`]'s helpers; the binaries under test are only ever given [`TlsConsul::https_addr`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

use crate::{free_port, wait_until, Consul, TempDir};

/// PEM files of a test PKI; removed with the scratch directory when dropped.
pub struct Pki {
    _dir: TempDir,
    /// The CA that signed both the server and the client certificate.
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A CA that signed nothing here: Consul's certificate does not chain to it.
    pub other_ca_cert: PathBuf,
}

/// A CA certificate and its key.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn new_ca(name: &str) -> Result<Ca> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key)?;
    Ok(Ca { cert, key })
}

/// A certificate for `names` (DNS names or IP addresses) signed by `ca`, and its key.
fn leaf(
    ca: &Ca,
    common_name: &str,
    names: &[&str],
    usage: &[ExtendedKeyUsagePurpose],
) -> Result<(String, String)> {
    let key = KeyPair::generate()?;
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names)?;
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = usage.to_vec();
    let cert = params.signed_by(&key, &ca.cert, &ca.key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

impl Pki {
    /// Generates the PKI into a new scratch directory.
    pub fn generate() -> Result<Pki> {
        let dir = TempDir::new("consul-tls");
        let write = |name: &str, pem: &str| -> Result<PathBuf> {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).with_context(|| format!("writing {}", path.display()))?;
            Ok(path)
        };
        let ca = new_ca("Berth test CA")?;
        let other = new_ca("Some other CA")?;
        let (server_cert, server_key) = leaf(
            &ca,
            "server.dc1.consul",
            &["server.dc1.consul", "localhost", "127.0.0.1"],
            &[
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )?;
        let (client_cert, client_key) = leaf(
            &ca,
            "berth",
            &["berth.client"],
            &[ExtendedKeyUsagePurpose::ClientAuth],
        )?;
        Ok(Pki {
            ca_cert: write("ca.pem", &ca.cert.pem())?,
            server_cert: write("server.pem", &server_cert)?,
            server_key: write("server-key.pem", &server_key)?,
            client_cert: write("client.pem", &client_cert)?,
            client_key: write("client-key.pem", &client_key)?,
            other_ca_cert: write("other-ca.pem", &other.cert.pem())?,
            _dir: dir,
        })
    }
}

/// A Consul dev agent with an https port (and its plain http port, for the test's own use).
pub struct TlsConsul {
    /// The agent, with its plain HTTP helpers (`register_instance`, `get`, ...).
    pub consul: Consul,
    /// `https://127.0.0.1:<port>`: the address to give the binaries under test.
    pub https_addr: String,
    pub https_port: u16,
    pub pki: Pki,
}

impl TlsConsul {
    /// Starts Consul serving HTTPS with a freshly generated [`Pki`]. With `require_client_cert`,
    /// the https port refuses clients without a certificate signed by the test CA.
    pub async fn start(require_client_cert: bool) -> Result<TlsConsul> {
        let pki = Pki::generate()?;
        let https_port = free_port();
        let hcl = vec![
            format!("ports {{ https = {https_port} }}"),
            format!(
                "ca_file = {:?}\ncert_file = {:?}\nkey_file = {:?}",
                path_str(&pki.ca_cert)?,
                path_str(&pki.server_cert)?,
                path_str(&pki.server_key)?
            ),
            format!(
                "verify_incoming_rpc = false\nverify_outgoing = false\nverify_incoming_https = {require_client_cert}"
            ),
        ];
        let consul = Consul::start_with(free_port(), &hcl).await?;
        // The https listener opens with the http one; make sure before a test relies on it.
        let https = format!("127.0.0.1:{https_port}");
        wait_until(
            "Consul's https port to accept connections",
            Duration::from_secs(10),
            || async { Ok(tokio::net::TcpStream::connect(&https).await.ok().map(drop)) },
        )
        .await
        .with_context(|| consul.proc.logs())?;
        Ok(TlsConsul {
            consul,
            https_addr: format!("https://{https}"),
            https_port,
            pki,
        })
    }
}

/// A path as the UTF-8 string HCL and command lines need.
pub fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not valid UTF-8", path.display()))
}
