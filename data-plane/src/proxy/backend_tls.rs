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

use berth_support::tls::{AcceptAnyCertificate, PemFile, PemFileError};
use rustls::RootCertStore;
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
    let provider = berth_support::tls::provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    // ALPN is left to hyper-rustls, which offers the HTTP versions it speaks (h2, http/1.1).
    let config = if skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate::new(provider)))
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
    let certs = match PemFile::read(path) {
        Ok(pem) => pem.certificates(),
        // A blank file, or text without PEM sections, holds no certificate.
        Err(PemFileError::Empty | PemFileError::Encrypted) => Vec::new(),
        Err(e) => return Err(fail(e.to_string())),
    };
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
