//! The rustls pieces that Berth's TLS clients (to Consul, to HTTPS backends) share: the *ring*
//! crypto provider, reading a PEM file into its sections, and the verifier that accepts any
//! server certificate.
//!
//! For: reading certificates and keys from files and explaining a bad file without naming a
//! setting; callers wrap a [`PemFileError`] in their own error, which names the setting and path.
//! Not for: building a `ClientConfig` (each client trusts different roots and speaks of different
//! flags), or TLS servers.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject, SectionKind};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// The crypto provider of every Berth TLS client: *ring*, passed explicitly so that nothing
/// depends on a process-wide default provider.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why a PEM file cannot be read. The text says what was wrong, not which file or setting.
#[derive(Debug, thiserror::Error)]
pub enum PemFileError {
    #[error("cannot read the file: {0}")]
    Read(#[source] std::io::Error),
    #[error("the file is empty")]
    Empty,
    #[error("not valid PEM: {}", describe_pem_error(.0))]
    Invalid(#[source] pem::Error),
    /// The file holds no PEM section but mentions `ENCRYPTED`: an encrypted key.
    #[error(
        "the key is encrypted; give an unencrypted PEM key (for example `openssl pkey -in KEY -out KEY.pem`)"
    )]
    Encrypted,
}

fn describe_pem_error(error: &pem::Error) -> String {
    match error {
        pem::Error::MissingSectionEnd { .. } => "a BEGIN line has no matching END line".into(),
        pem::Error::IllegalSectionStart { .. } => "a malformed BEGIN line".into(),
        pem::Error::Base64Decode(e) => format!("bad base64 inside a section ({e})"),
        other => other.to_string(),
    }
}

/// The PEM sections of a file, read whole.
#[derive(Debug, Clone)]
pub struct PemFile {
    sections: Vec<(SectionKind, Vec<u8>)>,
}

impl PemFile {
    /// Reads and parses the file at `path`.
    pub fn read(path: &Path) -> Result<PemFile, PemFileError> {
        let bytes = std::fs::read(path).map_err(PemFileError::Read)?;
        PemFile::parse(&bytes)
    }

    /// Parses the contents of a PEM file.
    pub fn parse(bytes: &[u8]) -> Result<PemFile, PemFileError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(PemFileError::Empty);
        }
        let mut sections = Vec::new();
        let mut reader: &[u8] = bytes;
        loop {
            match pem::from_buf(&mut reader) {
                Ok(Some(section)) => sections.push(section),
                Ok(None) => break,
                Err(e) => return Err(PemFileError::Invalid(e)),
            }
        }
        if sections.is_empty() && String::from_utf8_lossy(bytes).contains("ENCRYPTED") {
            return Err(PemFileError::Encrypted);
        }
        Ok(PemFile { sections })
    }

    /// The certificates in the file, in order.
    pub fn certificates(&self) -> Vec<CertificateDer<'static>> {
        self.sections
            .iter()
            .filter(|(kind, _)| *kind == SectionKind::Certificate)
            .map(|(_, der)| CertificateDer::from(der.clone()))
            .collect()
    }

    /// The first private key in the file (PKCS#8, PKCS#1 or SEC1).
    pub fn private_key(&self) -> Option<PrivateKeyDer<'static>> {
        self.sections
            .iter()
            .filter(|(kind, _)| is_key(*kind))
            .find_map(|(kind, der)| PrivateKeyDer::from_pem(*kind, der.clone()))
    }

    /// Whether the file holds a private key.
    pub fn has_private_key(&self) -> bool {
        self.sections.iter().any(|(kind, _)| is_key(*kind))
    }

    /// Whether the file holds a certificate.
    pub fn has_certificate(&self) -> bool {
        self.sections
            .iter()
            .any(|(kind, _)| *kind == SectionKind::Certificate)
    }

    /// What else the file held, to explain a file given for the wrong setting: ` (it holds a
    /// private key)`, ` (it holds a certificate)`, ` (it holds no PEM block)` or nothing.
    pub fn holds(&self) -> &'static str {
        if self.has_private_key() {
            " (it holds a private key)"
        } else if self.has_certificate() {
            " (it holds a certificate)"
        } else if self.sections.is_empty() {
            " (it holds no PEM block)"
        } else {
            ""
        }
    }
}

fn is_key(kind: SectionKind) -> bool {
    matches!(
        kind,
        SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey
    )
}

/// Accepts any server certificate (verification turned off by the operator), while still checking
/// the handshake signatures, so the server holds the key of the certificate it shows.
#[derive(Debug)]
pub struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl AcceptAnyCertificate {
    /// A verifier checking signatures with `provider`'s algorithms.
    pub fn new(provider: Arc<CryptoProvider>) -> AcceptAnyCertificate {
        AcceptAnyCertificate(provider)
    }
}

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
    fn empty_and_blank_files_are_empty() {
        assert!(matches!(PemFile::parse(b""), Err(PemFileError::Empty)));
        assert!(matches!(PemFile::parse(b" \n\t"), Err(PemFileError::Empty)));
    }

    #[test]
    fn a_section_without_end_is_invalid() {
        let err = PemFile::parse(b"-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap_err();
        assert!(matches!(err, PemFileError::Invalid(_)), "{err:?}");
        assert!(err.to_string().starts_with("not valid PEM: "), "{err}");
    }

    #[test]
    fn an_encrypted_key_is_named() {
        let err = PemFile::parse(b"Proc-Type: 4,ENCRYPTED\n").unwrap_err();
        assert!(matches!(err, PemFileError::Encrypted), "{err:?}");
    }

    #[test]
    fn text_without_sections_holds_no_block() {
        let pem = PemFile::parse(b"hello\n").unwrap();
        assert!(pem.certificates().is_empty());
        assert!(pem.private_key().is_none());
        assert_eq!(pem.holds(), " (it holds no PEM block)");
    }

    #[test]
    fn a_missing_file_cannot_be_read() {
        let err = PemFile::read(Path::new("/nonexistent/berth/ca.pem")).unwrap_err();
        assert!(err.to_string().starts_with("cannot read the file: "), "{err}");
    }
}
