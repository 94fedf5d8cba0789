//! Watching Consul: the service list and each service's instances with their health.
//!
//! One task follows `/v1/catalog/services` with blocking queries and keeps one child task per
//! service following `/v1/health/service/:name`. Every answer that changes something is folded
//! into a [`Catalog`] and published on a `watch` channel, so a burst of changes costs one compile
//! of the latest state. Nothing here polls on a timer: each request blocks in Consul until the
//! index moves (or the wait elapses, which just re-arms the query).
//!
//! While Consul is unreachable the last catalog stays published (proxies keep routing by it) and
//! each failing query retries with capped exponential backoff and jitter, logging what it waits
//! for. This module does not interpret tags; see `compile`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use berth_consul::catalog::ServiceEntry;
use std::future::Future;

use berth_consul::{next_index, Client, Indexed};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

/// How long one blocking query may wait in Consul before it is re-armed.
const BLOCKING_WAIT: Duration = Duration::from_secs(60);

/// Everything the control plane knows about the catalog: every service with all its instances.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Catalog {
    pub services: BTreeMap<String, Vec<ServiceEntry>>,
}

/// The watch's output: the latest complete catalog, or `None` until every service has been read
/// once (so a snapshot never describes a half-read catalog).
pub(crate) type CatalogRx = watch::Receiver<Option<Arc<Catalog>>>;

/// Starts the watch; it runs until the process ends.
pub(crate) fn spawn(client: Client) -> CatalogRx {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(run(client, tx));
    rx
}

enum Event {
    Services(Vec<String>),
    Health(String, Vec<ServiceEntry>),
}

async fn run(client: Client, out: watch::Sender<Option<Arc<Catalog>>>) {
    let (events_tx, mut events) = mpsc::channel::<Event>(64);
    tokio::spawn(follow_services(client.clone(), events_tx.clone()));

    let mut known: Option<Vec<String>> = None;
    let mut instances: BTreeMap<String, Vec<ServiceEntry>> = BTreeMap::new();
    let mut watchers: BTreeMap<String, JoinHandle<()>> = BTreeMap::new();
    let mut published: Option<Arc<Catalog>> = None;

    while let Some(event) = events.recv().await {
        match event {
            Event::Services(names) => {
                for gone in watchers
                    .keys()
                    .filter(|n| !names.contains(n))
                    .cloned()
                    .collect::<Vec<_>>()
                {
                    if let Some(task) = watchers.remove(&gone) {
                        task.abort();
                    }
                    instances.remove(&gone);
                    debug!(service = %gone, "service left the catalog");
                }
                for name in &names {
                    if !watchers.contains_key(name) {
                        let task =
                            tokio::spawn(follow_health(client.clone(), name.clone(), events_tx.clone()));
                        watchers.insert(name.clone(), task);
                    }
                }
                known = Some(names);
            }
            Event::Health(name, entries) => {
                // A late answer from a watcher of a service that has since left is dropped.
                if watchers.contains_key(&name) {
                    instances.insert(name, entries);
                }
            }
        }
        let Some(names) = &known else { continue };
        if names.iter().any(|n| !instances.contains_key(n)) {
            continue; // some service not read yet
        }
        let catalog = Catalog {
            services: instances.clone(),
        };
        if published.as_deref() != Some(&catalog) {
            let catalog = Arc::new(catalog);
            published = Some(catalog.clone());
            out.send_replace(Some(catalog));
        }
    }
}

async fn follow_services(client: Client, events: mpsc::Sender<Event>) {
    let what = format!("the service list from Consul at {}", client.address());
    follow(
        what,
        &events,
        |index| client.catalog_services(index, BLOCKING_WAIT),
        |services| Event::Services(services.into_keys().collect()),
    )
    .await
}

async fn follow_health(client: Client, service: String, events: mpsc::Sender<Event>) {
    let what = format!(
        "the instances of service {service:?} from Consul at {}",
        client.address()
    );
    follow(
        what,
        &events,
        |index| client.health_service(&service, index, BLOCKING_WAIT),
        |entries| Event::Health(service.clone(), entries),
    )
    .await
}

/// Runs one blocking query for ever, sending an event each time its index moves. After an error
/// the query restarts from index 0, so the first answer once Consul is back is always sent.
async fn follow<T, Q, Fut>(what: String, events: &mpsc::Sender<Event>, query: Q, event: impl Fn(T) -> Event)
where
    Q: Fn(u64) -> Fut,
    Fut: Future<Output = Result<Indexed<T>, berth_consul::Error>>,
{
    let mut index = 0;
    let mut backoff = Backoff::new(what);
    loop {
        match query(index).await {
            Ok(answer) => {
                backoff.succeeded();
                let changed = answer.index != index;
                index = next_index(index, answer.index);
                if changed && events.send(event(answer.value)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                index = 0;
                backoff.failed(&e).await;
            }
        }
    }
}

/// Capped exponential backoff with full jitter, which also keeps the logs readable: one warning
/// when a streak of failures starts, one info line when it ends.
pub(crate) struct Backoff {
    what: String,
    failures: u32,
}

impl Backoff {
    pub(crate) fn new(what: String) -> Backoff {
        Backoff { what, failures: 0 }
    }

    pub(crate) async fn failed(&mut self, error: &(dyn std::fmt::Display + Sync)) {
        self.failures += 1;
        let cap = Duration::from_millis(100 * 2u64.pow(self.failures.min(7))).min(Duration::from_secs(10));
        let delay = cap.mul_f64(0.5 + fastrand::f64() / 2.0);
        if self.failures == 1 || self.failures.is_multiple_of(20) {
            warn!(attempt = self.failures, retry_in = ?delay, "waiting for {}: {error}", self.what);
        } else {
            debug!(attempt = self.failures, retry_in = ?delay, "waiting for {}: {error}", self.what);
        }
        tokio::time::sleep(delay).await;
    }

    pub(crate) fn succeeded(&mut self) {
        if self.failures > 0 {
            info!(after_attempts = self.failures, "got {} again", self.what);
            self.failures = 0;
        }
    }
}
