//! Plumbing that every Berth binary needs and that has nothing to do with routing.
//!
//! - [`backoff`]: capped exponential backoff with full jitter, and a retry helper that logs a
//!   streak of failures once.
//! - [`signals`]: waiting for SIGTERM or Ctrl-C.
//! - [`logging`]: the `--log-level` / `--log-format` flags and the tracing set-up they drive.
//! - [`prometheus`]: the text exposition and a lock-free histogram, for `GET /metrics`.
//! - [`tls`]: the *ring* provider, PEM files and the accept-any-certificate verifier that the
//!   TLS clients (to Consul, to HTTPS backends) share.
//! - [`host_name`], [`error_chain`], [`parse_go_bool`]: small helpers each binary used to copy.
//!
//! Not for: anything about Consul, snapshots or HTTP proxying.

#![forbid(unsafe_code)]

pub mod backoff;
pub mod logging;
pub mod prometheus;
pub mod signals;
pub mod tls;

/// This machine's host name: the kernel's, else `$HOSTNAME`, else `fallback`.
pub fn host_name(fallback: &str) -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::env::var("HOSTNAME")
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| fallback.to_owned())
}

/// An error and all its sources, `: `-separated, skipping a source whose text its parent already
/// ends with (many libraries repeat their cause).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.ends_with(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// Go's `strconv.ParseBool`, which Consul and Registrator use for boolean variables and flags:
/// `1 t T TRUE true True` and `0 f F FALSE false False`.
pub fn parse_go_bool(value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        other => Err(format!("{other:?} is not a boolean (true or false)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);
    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn error_chains_skip_repeated_causes() {
        let e = Layer(
            "connect failed: refused",
            Some(Box::new(Layer(
                "refused",
                Some(Box::new(Layer("os error 111", None))),
            ))),
        );
        assert_eq!(error_chain(&e), "connect failed: refused: os error 111");
    }

    #[test]
    fn go_booleans() {
        assert_eq!(parse_go_bool("T"), Ok(true));
        assert_eq!(parse_go_bool("0"), Ok(false));
        assert!(parse_go_bool("yes").is_err());
    }

    #[test]
    fn a_host_name_is_never_empty() {
        assert!(!host_name("fallback").is_empty());
    }
}
