//! TLS to Consul: the rustls client configuration built from a [`TlsConfig`] (CA file, client
//! certificate and key, verification on or off), and plain-language explanations of TLS failures
//! that say which setting would fix them.
//!
//! The crypto provider is *ring*, passed explicitly: nothing here depends on a process-wide
//! default provider. Files are read once, when the client is built; every error names the setting
//! and the file (`CONSUL_CACERT /x/ca.pem: no certificate found in the file`).

use std::path::Path;
use std::sync::Arc;

use berth_support::tls::{AcceptAnyCertificate, PemFile};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{AlertDescription, CertificateError, RootCertStore};

use crate::config::{env, TlsConfig};
use crate::Error;

/// The crypto provider every TLS connection to Consul uses.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    berth_support::tls::provider()
}

/// The rustls configuration for `tls`. `system_roots`: trust the system's CA certificates when no
/// CA file is given (false when no address uses https, so that nothing is read needlessly).
pub(crate) fn client_config(tls: &TlsConfig, system_roots: bool) -> Result<rustls::ClientConfig, Error> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Setting {
            name: "TLS",
            value: String::new(),
            reason: format!("no usable TLS version: {e}"),
        })?;
    let builder = if !tls.verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate::new(provider)))
    } else {
        let mut roots = RootCertStore::empty();
        match &tls.ca_cert {
            Some(path) => add_ca_file(&mut roots, path)?,
            None if system_roots => {
                // Unreadable system certificates are not fatal: the handshake will fail with an
                // "unknown issuer" that points at CONSUL_CACERT.
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
            }
            None => {}
        }
        builder.with_root_certificates(roots)
    };
    let config = match (&tls.client_cert, &tls.client_key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let chain = read_client_certs(cert)?;
            let key_der = read_private_key(key)?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| Error::File {
                    setting: env::CLIENT_KEY,
                    path: key.clone(),
                    reason: format!("cannot be used with the certificate in {}: {e}", cert.display()),
                })?
        }
        (Some(cert), None) => {
            return Err(Error::File {
                setting: env::CLIENT_CERT,
                path: cert.clone(),
                reason: format!("a client certificate needs its key: set {} too", env::CLIENT_KEY),
            })
        }
        (None, Some(key)) => {
            return Err(Error::File {
                setting: env::CLIENT_KEY,
                path: key.clone(),
                reason: format!("a client key needs its certificate: set {} too", env::CLIENT_CERT),
            })
        }
    };
    Ok(config)
}

/// The PEM sections of a file, read whole; errors name `setting` and the file.
fn read_pem(setting: &'static str, path: &Path) -> Result<PemFile, Error> {
    PemFile::read(path).map_err(|e| Error::File {
        setting,
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn add_ca_file(roots: &mut RootCertStore, path: &Path) -> Result<(), Error> {
    let pem = read_pem(env::CACERT, path)?;
    let certs = pem.certificates();
    let file_error = |reason: String| Error::File {
        setting: env::CACERT,
        path: path.to_path_buf(),
        reason,
    };
    if certs.is_empty() {
        return Err(file_error(format!(
            "no certificate found in the file{}",
            pem.holds()
        )));
    }
    for (n, cert) in certs.into_iter().enumerate() {
        roots.add(cert).map_err(|e| {
            file_error(format!(
                "certificate {} in the file is not a usable CA certificate: {e}",
                n + 1
            ))
        })?;
    }
    Ok(())
}

fn read_client_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let pem = read_pem(env::CLIENT_CERT, path)?;
    let certs = pem.certificates();
    if certs.is_empty() {
        let swapped = if pem.has_private_key() {
            format!(": are {} and {} swapped?", env::CLIENT_CERT, env::CLIENT_KEY)
        } else {
            String::new()
        };
        return Err(Error::File {
            setting: env::CLIENT_CERT,
            path: path.to_path_buf(),
            reason: format!("no certificate found in the file{}{swapped}", pem.holds()),
        });
    }
    Ok(certs)
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    let pem = read_pem(env::CLIENT_KEY, path)?;
    pem.private_key().ok_or_else(|| {
        let swapped = if pem.has_certificate() {
            format!(": are {} and {} swapped?", env::CLIENT_CERT, env::CLIENT_KEY)
        } else {
            String::new()
        };
        Error::File {
            setting: env::CLIENT_KEY,
            path: path.to_path_buf(),
            reason: format!(
                "no private key found in the file (expected a PEM PRIVATE KEY, RSA PRIVATE KEY or \
                 EC PRIVATE KEY block){}{swapped}",
                pem.holds()
            ),
        }
    })
}

const CACERT_HINT: &str = "set --consul-cacert / CONSUL_CACERT to the CA that signed Consul's certificate";
const CLIENT_CERT_HINT: &str = "set --consul-client-cert / CONSUL_CLIENT_CERT and --consul-client-key / \
     CONSUL_CLIENT_KEY to a certificate signed by a CA that Consul trusts (its ca_file)";

/// A TLS failure in an operator's words: what failed and which setting would fix it.
pub(crate) fn explain(error: &rustls::Error, tls: &TlsConfig) -> String {
    let trusted_cas = match &tls.ca_cert {
        Some(path) => format!("the CA in {}", path.display()),
        None => "the system's CAs (no CONSUL_CACERT given)".to_string(),
    };
    match error {
        rustls::Error::InvalidCertificate(cert_error) => match cert_error {
            CertificateError::UnknownIssuer => format!(
                "certificate verify failed: Consul's certificate was not trusted (it is not signed \
                 by {trusted_cas}); {CACERT_HINT}"
            ),
            CertificateError::BadSignature => format!(
                "certificate verify failed: Consul's certificate was not trusted (bad signature); \
                 {CACERT_HINT}"
            ),
            CertificateError::NotValidForName => format!(
                "certificate verify failed: Consul's certificate is not valid for this address's \
                 host; connect by a name the certificate lists, or set {} to one",
                env::TLS_SERVER_NAME
            ),
            CertificateError::NotValidForNameContext { expected, presented } => format!(
                "certificate verify failed: Consul's certificate is not valid for {} (it is valid \
                 for {}); connect by a name the certificate lists, or set {} to one",
                expected.to_str(),
                presented.join(", "),
                env::TLS_SERVER_NAME
            ),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "certificate verify failed: Consul's certificate has expired".to_string()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "certificate verify failed: Consul's certificate is not valid yet (is this \
                 host's clock right?)"
                    .to_string()
            }
            other => format!("certificate verify failed: {other:?}"),
        },
        rustls::Error::AlertReceived(alert) => match alert {
            AlertDescription::BadCertificate
            | AlertDescription::CertificateRequired
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRevoked
            | AlertDescription::AccessDenied => {
                if tls.client_cert.is_some() {
                    format!(
                        "Consul refused this client's certificate (TLS alert {alert:?}); \
                         {CLIENT_CERT_HINT}"
                    )
                } else {
                    format!(
                        "Consul asks for a client certificate (TLS alert {alert:?}: it verifies \
                         incoming connections); {CLIENT_CERT_HINT}"
                    )
                }
            }
            other => format!("Consul ended the TLS handshake (TLS alert {other:?})"),
        },
        rustls::Error::InvalidMessage(_) => format!(
            "{error}: Consul does not seem to speak TLS on this port (for its plain HTTP port, \
             write http://HOST:PORT)"
        ),
        other => format!("TLS handshake failed: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    struct Files {
        dir: PathBuf,
    }

    impl Files {
        fn new(name: &str) -> Files {
            let dir = std::env::temp_dir().join(format!("berth-consul-tls-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("temp dir");
            Files { dir }
        }
        fn write(&self, name: &str, contents: &str) -> PathBuf {
            let path = self.dir.join(name);
            std::fs::write(&path, contents).expect("write");
            path
        }
    }

    impl Drop for Files {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// A CA, and a client certificate and key it signed, as PEM.
    fn pki() -> (String, String, String) {
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("ca");
        let client_key = rcgen::KeyPair::generate().expect("key");
        let client = rcgen::CertificateParams::new(vec!["client".to_string()])
            .expect("params")
            .signed_by(&client_key, &ca, &ca_key)
            .expect("client");
        (ca.pem(), client.pem(), client_key.serialize_pem())
    }

    fn err(tls: &TlsConfig) -> String {
        client_config(tls, false).expect_err("should fail").to_string()
    }

    #[test]
    fn builds_with_a_ca_and_a_client_certificate() {
        let files = Files::new("ok");
        let (ca, cert, key) = pki();
        // A CA file may hold several certificates.
        let (other_ca, _, _) = pki();
        let tls = TlsConfig {
            ca_cert: Some(files.write("ca.pem", &format!("{ca}{other_ca}"))),
            client_cert: Some(files.write("c.pem", &cert)),
            client_key: Some(files.write("k.pem", &key)),
            ..TlsConfig::default()
        };
        client_config(&tls, false).expect("valid");
        client_config(&TlsConfig::default(), true).expect("system roots");
        let insecure = TlsConfig {
            verify: false,
            ..TlsConfig::default()
        };
        client_config(&insecure, true).expect("no verification");
    }

    #[test]
    fn file_errors_name_the_setting_the_file_and_the_problem() {
        let files = Files::new("errors");
        let (ca, cert, key) = pki();
        let garbage = files.write("garbage.pem", "hello\n");
        let empty = files.write("empty.pem", "\n");
        let missing = files.dir.join("missing.pem");
        let ca_path = files.write("ca.pem", &ca);
        let cert_path = files.write("c.pem", &cert);
        let key_path = files.write("k.pem", &key);
        let broken = files.write("broken.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n");

        let with_ca = |path: &PathBuf| TlsConfig {
            ca_cert: Some(path.clone()),
            ..TlsConfig::default()
        };
        assert_eq!(
            err(&with_ca(&garbage)),
            format!(
                "CONSUL_CACERT {}: no certificate found in the file (it holds no PEM block)",
                garbage.display()
            )
        );
        assert_eq!(
            err(&with_ca(&empty)),
            format!("CONSUL_CACERT {}: the file is empty", empty.display())
        );
        let e = err(&with_ca(&missing));
        assert!(
            e.starts_with(&format!(
                "CONSUL_CACERT {}: cannot read the file: ",
                missing.display()
            )),
            "{e}"
        );
        let e = err(&with_ca(&key_path));
        assert!(
            e.ends_with("no certificate found in the file (it holds a private key)"),
            "{e}"
        );
        let e = err(&with_ca(&broken));
        assert!(
            e.contains("not valid PEM: a BEGIN line has no matching END line"),
            "{e}"
        );

        let client = |cert: &PathBuf, key: &PathBuf| TlsConfig {
            ca_cert: Some(ca_path.clone()),
            client_cert: Some(cert.clone()),
            client_key: Some(key.clone()),
            ..TlsConfig::default()
        };
        let e = err(&client(&key_path, &cert_path));
        assert!(e.starts_with("CONSUL_CLIENT_CERT"), "{e}");
        assert!(e.contains("swapped"), "{e}");
        let e = err(&client(&cert_path, &garbage));
        assert!(
            e.starts_with(&format!(
                "CONSUL_CLIENT_KEY {}: no private key found",
                garbage.display()
            )),
            "{e}"
        );
        let encrypted = files.write(
            "enc.pem",
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        );
        assert!(err(&client(&cert_path, &encrypted)).contains("the key is encrypted"));

        // A key that does not belong to the certificate.
        let (_, _, other_key) = pki();
        let other_key = files.write("other-key.pem", &other_key);
        let e = err(&client(&cert_path, &other_key));
        assert!(e.starts_with("CONSUL_CLIENT_KEY"), "{e}");
        assert!(e.contains("cannot be used with the certificate"), "{e}");

        let only_cert = TlsConfig {
            client_cert: Some(cert_path.clone()),
            ..TlsConfig::default()
        };
        assert!(err(&only_cert).contains("set CONSUL_CLIENT_KEY too"));
        let only_key = TlsConfig {
            client_key: Some(key_path.clone()),
            ..TlsConfig::default()
        };
        assert!(err(&only_key).contains("set CONSUL_CLIENT_CERT too"));
    }

    #[test]
    fn keys_in_every_pem_form_are_read() {
        let files = Files::new("keys");
        for (name, alg) in [
            ("ecdsa", &rcgen::PKCS_ECDSA_P256_SHA256),
            ("ed25519", &rcgen::PKCS_ED25519),
        ] {
            let key = rcgen::KeyPair::generate_for(alg).expect("key");
            let path = files.write(&format!("{name}.pem"), &key.serialize_pem());
            read_private_key(&path).expect(name);
        }
        // PKCS#1 ("RSA PRIVATE KEY") and SEC1 ("EC PRIVATE KEY") blocks are recognised as keys.
        for label in ["RSA PRIVATE KEY", "EC PRIVATE KEY", "PRIVATE KEY"] {
            let path = files.write(
                "labelled.pem",
                &format!("-----BEGIN {label}-----\nAAAA\n-----END {label}-----\n"),
            );
            read_private_key(&path).expect(label);
        }
    }

    #[test]
    fn explains_tls_failures_with_the_setting_to_change() {
        let tls = TlsConfig {
            ca_cert: Some("/x/ca.pem".into()),
            ..TlsConfig::default()
        };
        let unknown = explain(
            &rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
            &tls,
        );
        assert!(unknown.starts_with("certificate verify failed: Consul's certificate was not trusted"));
        assert!(
            unknown.contains("/x/ca.pem") && unknown.contains("CONSUL_CACERT"),
            "{unknown}"
        );
        let refused = explain(
            &rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
            &tls,
        );
        assert!(refused.contains("asks for a client certificate") && refused.contains("CONSUL_CLIENT_CERT"));
    }
}
