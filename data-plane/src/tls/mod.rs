//! TLS termination on the entrypoints named by `--tls`.
//!
//! For: the server side of TLS — the rustls configuration every TLS entrypoint shares (TLS 1.2
//! and 1.3 only, ALPN `h2` then `http/1.1`, the ring crypto provider), the certificates of
//! `--cert-dir` served by SNI ([`store`] reads the directory, [`resolve`] picks a certificate per
//! handshake, [`reload`] rescans the directory in the background), and the handshake itself,
//! bounded by `--tls-handshake-timeout` and run in the connection's task (see `listener`), never
//! in the accept loop.
//! Not for: TLS to backends (see `proxy::backend_tls`), or what the request path does with the
//! knowledge that a request came over TLS (`X-Forwarded-Proto`, see `proxy::accept`).

mod reload;
mod resolve;
mod store;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::server::ResolvesServerCert;
use rustls::ServerConfig;
use thiserror::Error;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use resolve::CertResolver;

/// The ALPN protocols offered, in order of preference.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// `--cert-dir` and its companions, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    /// The directory of certificates and keys.
    pub cert_dir: PathBuf,
    /// How often the directory is checked for changes.
    pub reload_interval: Duration,
    /// How long a client may take to complete its handshake.
    pub handshake_timeout: Duration,
}

/// What stops the binary at start.
#[derive(Debug, Error)]
pub(crate) enum TlsError {
    #[error("--cert-dir {dir}: cannot read the directory: {source}")]
    CertDir { dir: PathBuf, source: std::io::Error },
    #[error("cannot set up TLS: {0}")]
    Config(#[from] rustls::Error),
}

/// Why a handshake did not complete.
#[derive(Debug, Error)]
pub(crate) enum HandshakeError {
    #[error("TLS handshake not completed within {0:?}")]
    Timeout(Duration),
    #[error("TLS handshake failed: {0}")]
    Failed(#[from] std::io::Error),
}

/// Performs the TLS handshakes of every TLS entrypoint, with the certificates of `--cert-dir`.
#[derive(Clone)]
pub(crate) struct Acceptor {
    inner: tokio_rustls::TlsAcceptor,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor")
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl Acceptor {
    /// Loads `--cert-dir` (a directory that cannot be read stops the binary; bad files in it are
    /// reported and skipped, and an empty directory is only warned about: certificates may come
    /// later) and starts the task that picks up changes. Must run inside the tokio runtime.
    pub(crate) fn start(settings: &Settings) -> Result<Self, TlsError> {
        let (table, listing) = store::load(&settings.cert_dir).map_err(|source| TlsError::CertDir {
            dir: settings.cert_dir.clone(),
            source,
        })?;
        let resolver = Arc::new(CertResolver::new(table));
        tokio::spawn(reload::run(
            settings.cert_dir.clone(),
            settings.reload_interval,
            listing,
            resolver.clone(),
        ));
        Ok(Self {
            inner: tokio_rustls::TlsAcceptor::from(Arc::new(server_config(resolver)?)),
            handshake_timeout: settings.handshake_timeout,
        })
    }

    /// Runs the server side of the handshake on an accepted connection.
    pub(crate) async fn handshake(&self, stream: TcpStream) -> Result<TlsStream<TcpStream>, HandshakeError> {
        match tokio::time::timeout(self.handshake_timeout, self.inner.accept(stream)).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(HandshakeError::Timeout(self.handshake_timeout)),
        }
    }
}

/// The server configuration: ring, TLS 1.2 and 1.3, no client certificates, ALPN h2 and
/// http/1.1, session resumption by tickets (TLS 1.2 and 1.3) and by the in-memory session cache.
fn server_config(resolver: Arc<dyn ResolvesServerCert>) -> Result<ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use rustls::{ClientConfig, ClientConnection, ServerConnection};

    /// A server config serving one self-signed certificate for `name`, and a client config
    /// trusting it, limited to `versions`.
    fn configs(
        name: &str,
        versions: &[&'static rustls::SupportedProtocolVersion],
        alpn: &[&[u8]],
    ) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
        let dir = std::env::temp_dir().join(format!("berth-tls-mod-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let (cert, key) = store::tests::self_signed(&[name]);
        std::fs::write(dir.join("site.pem"), format!("{cert}{key}")).expect("write");
        let (table, _) = store::load(&dir).expect("load");
        let _ = std::fs::remove_dir_all(&dir);
        let server = server_config(Arc::new(CertResolver::new(table))).expect("server config");
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(cert.as_bytes()).expect("pem"))
            .expect("root");
        let mut client =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(versions)
                .expect("versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
        client.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        (Arc::new(server), Arc::new(client))
    }

    /// Runs a handshake in memory; the server connection once done.
    fn handshake(server: Arc<ServerConfig>, client: Arc<ClientConfig>, name: &str) -> ServerConnection {
        let name = ServerName::try_from(name.to_owned()).expect("name");
        let mut c = ClientConnection::new(client, name).expect("client");
        let mut s = ServerConnection::new(server).expect("server");
        for _ in 0..10 {
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).expect("client write");
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                s.read_tls(&mut rd).expect("server read");
            }
            s.process_new_packets().expect("server accepts");
            let mut buf = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut buf).expect("server write");
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                c.read_tls(&mut rd).expect("client read");
            }
            c.process_new_packets().expect("client accepts");
            if !c.is_handshaking() && !s.is_handshaking() {
                return s;
            }
        }
        panic!("handshake did not finish");
    }

    #[test]
    fn tls_1_2_and_1_3_clients_get_alpn() {
        let (server, client) = configs("v12.example", &[&rustls::version::TLS12], &[b"h2", b"http/1.1"]);
        let s = handshake(server, client, "v12.example");
        assert_eq!(s.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
        assert_eq!(s.alpn_protocol(), Some(&b"h2"[..]));
        assert_eq!(s.server_name(), Some("v12.example"));

        let (server, client) = configs("v13.example", &[&rustls::version::TLS13], &[b"http/1.1"]);
        let s = handshake(server, client, "v13.example");
        assert_eq!(s.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
        assert_eq!(s.alpn_protocol(), Some(&b"http/1.1"[..]));
    }

    /// A ClientHello of `version` without the supported_versions extension, as a TLS 1.0 or 1.1
    /// client sends it.
    fn client_hello(version: [u8; 2]) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&version); // client_version
        body.extend_from_slice(&[7; 32]); // random
        body.push(0); // session id
        body.extend_from_slice(&[0, 4, 0xc0, 0x2b, 0xc0, 0x2f]); // ECDHE-{ECDSA,RSA}-AES128-GCM-SHA256
        body.extend_from_slice(&[1, 0]); // compression: null
        let extensions: [u8; 24] = [
            0, 13, 0, 6, 0, 4, 4, 1, 4, 3, // signature_algorithms: rsa_pkcs1_sha256, ecdsa_p256_sha256
            0, 10, 0, 4, 0, 2, 0, 0x1d, // supported_groups: x25519
            0, 11, 0, 2, 1, 0, // ec_point_formats: uncompressed
        ];
        body.extend_from_slice(&[0, 24]);
        body.extend_from_slice(&extensions);
        let mut handshake = vec![1, 0, 0, u8::try_from(body.len()).expect("short")];
        handshake.extend_from_slice(&body);
        let mut record = vec![22, 3, 1, 0, u8::try_from(handshake.len()).expect("short")];
        record.extend_from_slice(&handshake);
        record
    }

    #[test]
    fn tls_1_0_and_1_1_are_refused() {
        let (server, _) = configs("old.example", &[&rustls::version::TLS12], &[]);
        for version in [[3, 1], [3, 2]] {
            let mut s = ServerConnection::new(server.clone()).expect("server");
            let hello = client_hello(version);
            s.read_tls(&mut &hello[..]).expect("read");
            let error = s.process_new_packets().expect_err("refused");
            assert!(
                matches!(
                    error,
                    rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOffered)
                ),
                "{version:?}: {error:?}"
            );
            // The client is told: a fatal protocol_version alert.
            let mut alert = Vec::new();
            s.write_tls(&mut alert).expect("alert");
            assert_eq!(alert.first(), Some(&21), "an alert record: {alert:?}");
            assert_eq!(alert.last(), Some(&70), "protocol_version: {alert:?}");
        }
        // The same hello saying TLS 1.2 is answered (ServerHello, Certificate, ...).
        let mut s = ServerConnection::new(server).expect("server");
        s.read_tls(&mut &client_hello([3, 3])[..]).expect("read");
        s.process_new_packets().expect("a TLS 1.2 hello is accepted");
        let mut answer = Vec::new();
        s.write_tls(&mut answer).expect("answer");
        assert_eq!(
            answer.get(..3),
            Some(&[22, 3, 3][..]),
            "a TLS 1.2 handshake record"
        );
    }

    #[test]
    fn no_certificate_refuses_the_handshake() {
        let table = store::CertTable::default();
        assert!(table.lookup(Some("any.example")).is_none() && table.lookup(None).is_none());
        let server = server_config(Arc::new(CertResolver::new(table))).expect("config");
        let mut s = ServerConnection::new(Arc::new(server)).expect("server");
        s.read_tls(&mut &client_hello([3, 3])[..]).expect("read");
        let error = s.process_new_packets().expect_err("no certificate");
        assert!(
            matches!(error, rustls::Error::General(ref m) if m.contains("no server certificate")),
            "{error:?}"
        );
    }
}
