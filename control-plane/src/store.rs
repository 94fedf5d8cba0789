//! The snapshot store: the one current snapshot, and the loop that recompiles the services the
//! watch says changed.
//!
//! Streams subscribe to the store's `watch` channel; a change wakes each of them once, however
//! many compiles happened meanwhile, so a slow proxy only ever receives the latest state.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::compile::{Compiled, Compiler};
use crate::metrics::Metrics;
use crate::watch::{Update, WatchStatus};

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

    /// Publishes `compiled` unless the current snapshot has the same version and errors.
    pub(crate) fn publish(&self, compiled: Compiled) -> bool {
        self.tx.send_if_modified(|current| {
            if current.as_ref().is_some_and(|c| {
                c.compiled.version == compiled.version && c.compiled.errors == compiled.errors
            }) {
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

/// Applies every update of the watch to `compiler` and publishes the result. Updates that
/// arrive while one is being compiled are applied together. Runs until the watch ends.
pub(crate) async fn follow(
    mut updates: mpsc::UnboundedReceiver<Update>,
    mut compiler: Compiler,
    store: Store,
    status: Arc<WatchStatus>,
    metrics: Arc<Metrics>,
) {
    while let Some(update) = updates.recv().await {
        let mut changed = update.changed;
        while let Ok(more) = updates.try_recv() {
            changed.extend(more.changed);
        }
        let started = Instant::now();
        status.compiled_services(compiler.apply(&changed));
        let compiled = compiler.compiled();
        metrics.compiled(started.elapsed());
        let (version, routes, errors) = (
            compiled.version.clone(),
            compiled.snapshot.routes.len(),
            compiled.errors.len(),
        );
        if store.publish(compiled) {
            info!(%version, routes, errors, services = changed.len(), "published snapshot");
        }
        // Only the errors of what changed: an unchanged bad tag is not logged again.
        for service in changed.keys() {
            for e in compiler.errors_of(service) {
                warn!(
                    service = %e.service,
                    instance = %e.instance.as_deref().unwrap_or("-"),
                    router = %e.router.as_deref().map(clip).unwrap_or("-"),
                    tag = %e.tag.as_deref().map(clip).unwrap_or("-"),
                    position = %e.position.map(|p| p.to_string()).as_deref().unwrap_or("-"),
                    "route rejected: {}",
                    clip(&e.error)
                );
            }
        }
    }
}

/// At most 256 bytes of an operator's text, for the log: a tag can be 64 KB.
fn clip(text: &str) -> &str {
    match text.char_indices().nth(256) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}
