//! A small client for the parts of Consul's HTTP API that Berth uses.
//!
//! - [`catalog`]: blocking queries on the service list and on each service's health, for the
//!   control plane's watch.
//! - [`agent`]: registering, listing and removing services (and their checks) on the local Consul
//!   agent, for `berth-agent`.
//! - [`summaries`]: Consul's per-service summary followed from answer to answer at the cost of
//!   what changed, for the watch to find changes its other queries do not show.
//! - [`config`]: how to reach Consul (one or more addresses, ACL token, datacenter, read mode,
//!   TLS), from flags or from the standard `CONSUL_*` environment variables.
//! - `client` (the HTTP plumbing and failover between addresses), `tls` (certificates, and TLS
//!   failures explained) and `scan` (reading the whole-catalog answers that come after every
//!   change at the cost of one pass over their bytes) are internal.
//!
//! It is not a general Consul SDK: it speaks only the endpoints above, and leaves retry policy to
//! the caller (a control plane and a host agent want different ones). Every error names the URL it
//! concerns, so an operator can reproduce it with `curl`, or the setting and file that were wrong.

pub mod agent;
pub mod catalog;
mod client;
pub mod config;
mod error;
mod scan;
pub mod summaries;
mod tls;

pub use client::{Client, Indexed};
pub use config::{parse_go_bool, Config, ReadMode, TlsConfig};
pub use error::Error;

/// The index to send with the next blocking query, given the one we sent and the one Consul
/// returned, following Consul's documented rules: an index that goes backwards (a snapshot
/// restore, a leader change) resets the watch to the beginning, and an index is never below 1.
pub fn next_index(previous: u64, returned: u64) -> u64 {
    if returned < previous {
        0
    } else {
        returned.max(1)
    }
}

/// Consul writes `null` for empty lists and maps; read it as the empty value.
pub(crate) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + serde::Deserialize<'de>,
{
    use serde::Deserialize;
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::next_index;

    #[test]
    fn index_moves_forward_and_resets_when_it_goes_back() {
        assert_eq!(next_index(0, 0), 1);
        assert_eq!(next_index(0, 10), 10);
        assert_eq!(next_index(10, 10), 10);
        assert_eq!(next_index(10, 12), 12);
        assert_eq!(next_index(10, 3), 0);
    }
}
