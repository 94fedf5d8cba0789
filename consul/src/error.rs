//! Errors of the Consul client. Each names what was asked of Consul, so it can be reproduced.

/// What went wrong talking to Consul.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configured Consul address is not a usable HTTP(S) URL.
    #[error("invalid Consul address {address:?}: {reason}")]
    InvalidAddress { address: String, reason: String },
    /// Consul could not be reached, or the connection broke mid-request.
    #[error("cannot reach Consul at {url}: {reason}")]
    Unreachable { url: String, reason: String },
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
    /// An `Unreachable` error whose reason spells out the whole cause chain (reqwest's own
    /// message alone says only "error sending request").
    pub(crate) fn unreachable(url: &url::Url, error: &reqwest::Error) -> Error {
        let mut reason = if error.is_timeout() {
            "timed out".to_string()
        } else {
            error.to_string()
        };
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            reason.push_str(": ");
            reason.push_str(&cause.to_string());
            source = cause.source();
        }
        Error::Unreachable {
            url: url.to_string(),
            reason,
        }
    }

    /// True for errors that say nothing about the request itself (Consul down, restarting, no
    /// leader yet): the caller should retry the same request later.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unreachable { .. } => true,
            Error::Status { status, .. } => *status >= 500 || *status == 429,
            Error::InvalidAddress { .. } | Error::Decode { .. } => false,
        }
    }
}
