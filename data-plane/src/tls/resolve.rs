//! The certificate for each handshake, from the current [`CertTable`].
//!
//! For: rustls's [`ResolvesServerCert`] over a table swapped whole by `reload`: a handshake reads
//! the table without a lock and never sees half of a reload. A client without SNI, or asking for
//! a name no certificate has, gets the default certificate (the first usable file in file-name
//! order), as Traefik serves its default certificate; with no certificate at all the handshake is
//! refused.
//! Not for: reading the directory (see `store`).

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::store::CertTable;

#[derive(Debug)]
pub(crate) struct CertResolver {
    table: ArcSwap<CertTable>,
}

impl CertResolver {
    pub(crate) fn new(table: CertTable) -> Self {
        Self {
            table: ArcSwap::from_pointee(table),
        }
    }

    /// Serves `table` from the next handshake on.
    pub(crate) fn replace(&self, table: CertTable) {
        self.table.store(Arc::new(table));
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let found = self.table.load().lookup(client_hello.server_name());
        if found.is_none() {
            tracing::debug!(
                server_name = client_hello.server_name().unwrap_or(""),
                "TLS handshake refused: no certificate loaded"
            );
        }
        found
    }
}
