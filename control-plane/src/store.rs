//! The snapshot store: the one current snapshot, and the loop that recompiles it whenever the
//! catalog changes.
//!
//! Streams subscribe to the store's `watch` channel; a change wakes each of them once, however
//! many compiles happened meanwhile, so a slow proxy only ever receives the latest state.

use std::sync::Arc;
use std::time::SystemTime;

use berth_rules::Settings;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::compile::{compile, Compiled};
use crate::watch::CatalogRx;

/// A compiled snapshot as published, with when it was built.
#[derive(Debug)]
pub(crate) struct Published {
    pub compiled: Compiled,
    pub built_at: SystemTime,
}

pub(crate) type PublishedRx = watch::Receiver<Option<Arc<Published>>>;

/// Holds the current snapshot (none until the catalog has been read once).
#[derive(Clone)]
pub(crate) struct Store {
    tx: Arc<watch::Sender<Option<Arc<Published>>>>,
}

impl Store {
    pub(crate) fn new() -> Store {
        Store {
            tx: Arc::new(watch::channel(None).0),
        }
    }

    pub(crate) fn subscribe(&self) -> PublishedRx {
        self.tx.subscribe()
    }

    pub(crate) fn current(&self) -> Option<Arc<Published>> {
        self.tx.borrow().clone()
    }

    /// Publishes `compiled` unless it equals the current snapshot (same routes and errors).
    fn publish(&self, compiled: Compiled) -> bool {
        self.tx.send_if_modified(|current| {
            if current.as_ref().is_some_and(|c| c.compiled == compiled) {
                return false;
            }
            *current = Some(Arc::new(Published {
                compiled,
                built_at: SystemTime::now(),
            }));
            true
        })
    }
}

/// Recompiles on every catalog change and publishes the result. Runs until the watch ends.
pub(crate) async fn follow(mut catalog: CatalogRx, settings: Settings, store: Store) {
    loop {
        let latest = catalog.borrow_and_update().clone();
        if let Some(latest) = latest {
            let compiled = compile(&latest, &settings);
            let (version, routes, errors) = (
                compiled.version.clone(),
                compiled.snapshot.routes.len(),
                compiled.errors.clone(),
            );
            if store.publish(compiled) {
                info!(%version, routes, errors = errors.len(), "published snapshot");
                for e in &errors {
                    warn!(
                        service = %e.service,
                        instance = e.instance.as_deref().unwrap_or("-"),
                        tag = e.tag.as_deref().unwrap_or("-"),
                        "route rejected: {}",
                        e.error
                    );
                }
            }
        }
        if catalog.changed().await.is_err() {
            return;
        }
    }
}
