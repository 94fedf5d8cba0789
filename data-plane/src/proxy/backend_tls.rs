//! TLS to backends: the rustls client configuration for clusters with scheme `https`.
//!
//! For: the trust the proxy gives a backend's certificate, from its flags — the system's CA
//! certificates plus any `--backend-ca` files, or no verification at all with
//! `--backend-insecure-skip-verify` (Traefik's `serversTransport.insecureSkipVerify`, which
//! self-signed backends need). The server name checked is the endpoint's address (an IP address
//! must be in the certificate's IP SANs). The crypto provider is *ring*, passed explicitly.
//! Not for: TLS on the proxy's own entrypoints (there is none) or client certificates.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use thiserror::Error;

/// Why the backend TLS settings cannot be used.
#[derive(Debug, Error)]
pub(crate) enum TlsError {
    #[error("--backend-ca {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error("TLS to backends: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The client configuration for HTTPS backends.
pub(crate) fn client_config(
    ca_files: &[PathBuf],
    skip_verify: bool,
) -> Result<rustls::ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    // ALPN is left to hyper-rustls, which sets it from the HTTP versions it speaks (http/1.1).
    let config = if skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        // Unreadable system certificates are not fatal: such a backend fails with "unknown
        // issuer", which points at --backend-ca.
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        for path in ca_files {
            add_ca_file(&mut roots, path)?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(config)
}

fn add_ca_file(roots: &mut RootCertStore, path: &Path) -> Result<(), TlsError> {
    let fail = |reason: String| TlsError::CaFile {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read the file: {e}")))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(fail("no certificate found in the file".into()));
    }
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| fail(format!("a certificate cannot be used as a CA: {e}")))?;
    }
    Ok(())
}

/// Accepts any certificate, still checking handshake signatures (so the peer holds the key of the
/// certificate it shows).
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_files() {
        let dir = std::env::temp_dir().join(format!("berth-proxy-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let good = dir.join("ca.pem");
        std::fs::write(&good, cert.cert.pem()).unwrap();
        client_config(std::slice::from_ref(&good), false).expect("a CA file");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let err = client_config(&[empty], false).expect_err("empty");
        assert!(err.to_string().contains("no certificate found"), "{err}");
        let err = client_config(&[dir.join("missing.pem")], false).expect_err("missing");
        assert!(err.to_string().starts_with("--backend-ca "), "{err}");
        client_config(&[], true).expect("skip verify");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
