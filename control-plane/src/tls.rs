//! TLS (and mutual TLS) on the gRPC address, with certificates reloaded from their files.
//!
//! For: building the rustls server configuration from `--grpc-tls-cert`, `--grpc-tls-key` and
//! (for mTLS) `--grpc-client-ca`, re-reading those files when their modification time changes
//! (new connections use the new certificates; open streams keep theirs), and the accept loop
//! that hands tonic only connections whose handshake succeeded. A failed handshake (a client
//! without a certificate, or with one the CA did not sign) is logged once per peer address with
//! the reason, rate-limited, and never reaches the gRPC server.
//! Not for: the gRPC services themselves. ring is the crypto provider, as everywhere in Berth.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

/// How often the certificate files' modification times are checked.
const RELOAD_EVERY: Duration = Duration::from_secs(2);
/// How long a client may take to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The files the gRPC server's TLS is read from.
#[derive(Debug, Clone)]
pub(crate) struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Clients must present a certificate signed by one of these CAs (mTLS).
    pub client_ca: Option<PathBuf>,
}

/// Why the TLS configuration could not be built; each names the flag and the file.
#[derive(Debug, Error)]
pub(crate) enum TlsError {
    #[error("{flag} {}: cannot read: {source}", path.display())]
    Read {
        flag: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{flag} {}: {what}", path.display())]
    Content {
        flag: &'static str,
        path: PathBuf,
        what: String,
    },
    #[error("--grpc-tls-cert/--grpc-tls-key: the key does not go with the certificate, or is unusable: {0}")]
    Pair(rustls::Error),
    #[error("--grpc-client-ca {}: cannot verify client certificates with it: {source}", path.display())]
    ClientCa {
        path: PathBuf,
        source: rustls::server::VerifierBuilderError,
    },
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        flag,
        path: path.to_owned(),
        source,
    })
}

fn certificates(flag: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(flag, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Content {
            flag,
            path: path.to_owned(),
            what: format!("not PEM certificates: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Content {
            flag,
            path: path.to_owned(),
            what: "holds no PEM certificate".into(),
        });
    }
    Ok(certs)
}

impl TlsFiles {
    /// The server configuration from the files as they are now.
    pub(crate) fn load(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = certificates("--grpc-tls-cert", &self.cert)?;
        let key_pem = read("--grpc-tls-key", &self.key)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Content {
            flag: "--grpc-tls-key",
            path: self.key.clone(),
            what: format!("no PEM private key: {e}"),
        })?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Pair)?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for cert in certificates("--grpc-client-ca", path)? {
                    roots.add(cert).map_err(|e| TlsError::Content {
                        flag: "--grpc-client-ca",
                        path: path.clone(),
                        what: format!("not a usable CA certificate: {e}"),
                    })?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|source| TlsError::ClientCa {
                        path: path.clone(),
                        source,
                    })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(chain, key).map_err(TlsError::Pair)?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }

    /// The files' modification times, to notice a change.
    fn stamp(&self) -> Vec<Option<SystemTime>> {
        [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()]
            .into_iter()
            .flatten()
            .map(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok())
            .collect()
    }
}

/// Accepts TCP connections on `listener`, completes each TLS handshake in a task of its own and
/// passes the established streams on, for `serve_with_incoming`. The configuration is reloaded
/// when a file changes; a reload that fails keeps the previous configuration (and says why).
pub(crate) fn incoming(
    listener: TcpListener,
    files: TlsFiles,
    first: Arc<ServerConfig>,
) -> mpsc::Receiver<Result<TlsStream<TcpStream>, std::io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    let config = Arc::new(RwLock::new(first));
    tokio::spawn(reload(files, config.clone()));
    tokio::spawn(async move {
        // When a refusal was last logged at warn level: at most one every 10 s, the rest at debug.
        let last_warned: Arc<std::sync::Mutex<Option<tokio::time::Instant>>> = Arc::default();
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, never spin.
                    warn!("gRPC: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let current = config
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            let acceptor = TlsAcceptor::from(current);
            let handshake_tx = tx.clone();
            let last_warned = last_warned.clone();
            tokio::spawn(async move {
                let error = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = handshake_tx.send(Ok(stream)).await;
                        return;
                    }
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("no handshake within {HANDSHAKE_TIMEOUT:?}"),
                };
                let loud = {
                    let mut last = last_warned
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let loud = last.is_none_or(|at| at.elapsed() >= Duration::from_secs(10));
                    if loud {
                        *last = Some(tokio::time::Instant::now());
                    }
                    loud
                };
                if loud {
                    warn!(%peer, "gRPC: TLS handshake refused: {error} (further refusals within 10s are logged at debug level)");
                } else {
                    debug!(%peer, "gRPC: TLS handshake refused: {error}");
                }
            });
            if tx.is_closed() {
                return;
            }
        }
    });
    rx
}

async fn reload(files: TlsFiles, config: Arc<RwLock<Arc<ServerConfig>>>) {
    let mut stamp = files.stamp();
    loop {
        tokio::time::sleep(RELOAD_EVERY).await;
        let now = files.stamp();
        if now == stamp {
            continue;
        }
        stamp = now;
        match files.load() {
            Ok(new) => {
                *config.write().unwrap_or_else(std::sync::PoisonError::into_inner) = new;
                info!(cert = %files.cert.display(), "gRPC TLS: certificates reloaded");
            }
            Err(e) => warn!("gRPC TLS: reload failed, keeping the previous certificates: {e}"),
        }
    }
}
