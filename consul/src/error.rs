//! Errors of the Consul client. Each names what was asked of Consul, so it can be reproduced, or
//! the setting and file that were wrong.

use std::path::PathBuf;

/// What went wrong configuring the client or talking to Consul.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configured Consul address is not a usable HTTP(S) URL.
    #[error("invalid Consul address {address:?}: {reason}")]
    InvalidAddress { address: String, reason: String },
    /// A setting (an environment variable, or the flag named after it) has an unusable value.
    #[error("{name}={value:?}: {reason}")]
    Setting {
        name: &'static str,
        value: String,
        reason: String,
    },
    /// A file named by a setting (CA, client certificate or key, token file) could not be used.
    /// Displayed as "CONSUL_CACERT /x/ca.pem: no certificate found in the file".
    #[error("{setting} {}: {reason}", path.display())]
    File {
        setting: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// Consul could not be reached, or the connection broke mid-request.
    #[error("cannot reach Consul at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The TLS handshake with Consul failed, or Consul refused this client's certificate; the
    /// reason says which, and which setting would fix it.
    #[error("TLS with Consul at {url} failed: {reason}")]
    Tls { url: String, reason: String },
    /// Consul answered with an error status.
    #[error("Consul answered {status} to {method} {url}: {body}")]
    Status {
        method: &'static str,
        url: String,
        status: u16,
        body: String,
    },
    /// Consul's answer did not have the expected shape.
    #[error("unexpected answer from Consul to {url}: {reason}")]
    Decode { url: String, reason: String },
}

impl Error {
    /// True for errors that say nothing about the request itself (Consul down, restarting, no
    /// leader yet, a server whose certificate this client does not trust): the caller should
    /// retry the same request later. The client has already moved on to its next address.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unreachable { .. } | Error::Tls { .. } => true,
            Error::Status { status, .. } => *status >= 500 || *status == 429,
            Error::InvalidAddress { .. }
            | Error::Setting { .. }
            | Error::File { .. }
            | Error::Decode { .. } => false,
        }
    }

    /// True for a TLS failure (see [`Error::Tls`]).
    pub fn is_tls(&self) -> bool {
        matches!(self, Error::Tls { .. })
    }
}
