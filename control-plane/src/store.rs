//! The snapshot store: the current snapshot, the recent versions deltas can start from, and the
//! loop that recompiles the services the watch says changed.
//!
//! Streams subscribe to the store's `watch` channel; a change wakes each of them once, however
//! many compiles happened meanwhile, so a slow proxy only ever receives the latest state.
//!
//! Every update a stream sends is encoded here, once, and shared by every stream that sends it
//! (see [`Encoded`]): the full snapshot of a version, and the delta between two versions (kept
//! while the target is the current version). Deltas can start from any of the last
//! [`HISTORY`] versions, whose per-item digests the store keeps (not their snapshots).
//! Bursts of changes are coalesced: [`follow`] compiles and publishes at most once per window.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use berth_proto::v1::route_update::Body;
use berth_proto::v1::{Delta, RouteUpdate, Snapshot, UpToDate};
use berth_proto::{cluster_digest, route_digest, ItemDigest};
use bytes::Bytes;
use prost::Message as _;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::compile::{Compiled, Compiler};
use crate::metrics::Metrics;
use crate::watch::{Update, WatchStatus};

/// How many recent versions a delta can start from.
pub(crate) const HISTORY: usize = 16;

/// A compiled snapshot as published, with when it was built.
#[derive(Debug)]
pub(crate) struct Published {
    pub compiled: Compiled,
    pub built_at: SystemTime,
    /// The full snapshot's encoding, made by the first stream that needs it.
    pub full: OnceLock<Arc<Encoded>>,
}

impl Published {
    /// The full snapshot, encoded once.
    pub(crate) fn full(&self) -> Arc<Encoded> {
        self.full
            .get_or_init(|| {
                Arc::new(Encoded::new(
                    Kind::Full,
                    Body::Snapshot(self.compiled.snapshot.clone()),
                ))
            })
            .clone()
    }
}

/// What kind of update a push is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Full,
    Delta,
    UpToDate,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Full => "full",
            Kind::Delta => "delta",
            Kind::UpToDate => "up_to_date",
        }
    }
}

/// The body of a `RouteUpdate` (field `snapshot`, `delta` or `up_to_date` with its tag and
/// length), encoded once. A stream sends it after its own `version` and `nonce` fields:
/// protobuf fields may come in any order, so the result is an ordinary `RouteUpdate`.
#[derive(Debug)]
pub(crate) struct Encoded {
    pub kind: Kind,
    pub body: Bytes,
    /// Routes and clusters the update carries, upserted or removed (for the log).
    pub items: usize,
}

impl Encoded {
    fn new(kind: Kind, body: Body) -> Encoded {
        let items = match &body {
            Body::Snapshot(s) => s.routes.len() + s.clusters.len(),
            Body::Delta(d) => {
                d.routes.len() + d.clusters.len() + d.removed_routes.len() + d.removed_clusters.len()
            }
            Body::UpToDate(_) => 0,
        };
        // Empty strings are not encoded in proto3: this is the body field alone.
        let message = RouteUpdate {
            version: String::new(),
            nonce: String::new(),
            body: Some(body),
        };
        Encoded {
            kind,
            body: Bytes::from(message.encode_to_vec()),
            items,
        }
    }

    pub(crate) fn up_to_date() -> Encoded {
        Encoded::new(Kind::UpToDate, Body::UpToDate(UpToDate {}))
    }
}

/// The digest of every item of one version, by name.
#[derive(Debug, Default)]
struct Index {
    routes: HashMap<String, ItemDigest>,
    clusters: HashMap<String, ItemDigest>,
}

impl Index {
    fn of(compiled: &Compiled) -> Index {
        let snapshot = &compiled.snapshot;
        let digests = &compiled.digests;
        let routes = if digests.routes.len() == snapshot.routes.len() {
            snapshot
                .routes
                .iter()
                .zip(&digests.routes)
                .map(|(r, d)| (r.name.clone(), *d))
                .collect()
        } else {
            snapshot
                .routes
                .iter()
                .map(|r| (r.name.clone(), route_digest(r)))
                .collect()
        };
        let clusters = if digests.clusters.len() == snapshot.clusters.len() {
            snapshot
                .clusters
                .iter()
                .zip(&digests.clusters)
                .map(|(c, d)| (c.name.clone(), *d))
                .collect()
        } else {
            snapshot
                .clusters
                .iter()
                .map(|c| (c.name.clone(), cluster_digest(c)))
                .collect()
        };
        Index { routes, clusters }
    }
}

/// A recent version.
#[derive(Debug)]
struct Recent {
    version: String,
    built_at: SystemTime,
    index: Arc<Index>,
}

#[derive(Debug, Default)]
struct History {
    /// Oldest first; the last is the current version.
    recent: VecDeque<Recent>,
    /// Deltas to the current version, by the version they start from. Each is computed once
    /// (the first stream to need it computes; the others wait for it).
    deltas: HashMap<String, Arc<OnceLock<Arc<Encoded>>>>,
}

pub(crate) type PublishedRx = watch::Receiver<Option<Arc<Published>>>;

/// Holds the current snapshot (none until the catalog has been read once).
#[derive(Clone)]
pub(crate) struct Store {
    tx: Arc<watch::Sender<Option<Arc<Published>>>>,
    history: Arc<Mutex<History>>,
}

impl Store {
    pub(crate) fn new() -> Store {
        Store {
            tx: Arc::new(watch::channel(None).0),
            history: Arc::default(),
        }
    }

    pub(crate) fn subscribe(&self) -> PublishedRx {
        self.tx.subscribe()
    }

    pub(crate) fn current(&self) -> Option<Arc<Published>> {
        self.tx.borrow().clone()
    }

    /// Publishes `compiled` unless the current snapshot has the same version and errors.
    /// Only the compile loop publishes. The history learns a new version before any stream is
    /// woken for it, so every stream finds the delta to it.
    pub(crate) fn publish(&self, compiled: Compiled) -> bool {
        let (same, new_version) = match self.tx.borrow().as_ref() {
            Some(c) => (
                c.compiled.version == compiled.version && c.compiled.errors == compiled.errors,
                c.compiled.version != compiled.version,
            ),
            None => (false, true),
        };
        if same {
            return false;
        }
        let built_at = SystemTime::now();
        if new_version {
            let index = Arc::new(Index::of(&compiled));
            let version = compiled.version.clone();
            let mut history = self.lock();
            history.recent.retain(|r| r.version != version);
            history.recent.push_back(Recent {
                version,
                built_at,
                index,
            });
            while history.recent.len() > HISTORY {
                history.recent.pop_front();
            }
            history.deltas.clear();
        }
        self.tx.send_replace(Some(Arc::new(Published {
            compiled,
            built_at,
            full: OnceLock::new(),
        })));
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, History> {
        // The history holds no invariant a panicking holder could break half-way.
        self.history
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// When the version after `version` was published: since then a proxy holding `version` is
    /// behind. `None` when `version` is the current one or not known.
    pub(crate) fn behind_since(&self, version: &str) -> Option<SystemTime> {
        let history = self.lock();
        let at = history.recent.iter().position(|r| r.version == version)?;
        history.recent.get(at + 1).map(|r| r.built_at)
    }

    /// The delta from `from` to `current`, encoded once for every stream; `None` if `from` is
    /// not a recent version (or `current` is no longer the newest).
    pub(crate) fn delta(&self, from: &str, current: &Published) -> Option<Arc<Encoded>> {
        let (base, target, slot) = {
            let mut history = self.lock();
            let target = history.recent.back()?;
            if target.version != current.compiled.version || from == target.version {
                return None;
            }
            let target = target.index.clone();
            let base = history.recent.iter().find(|r| r.version == from)?.index.clone();
            let slot = history.deltas.entry(from.to_owned()).or_default().clone();
            (base, target, slot)
        };
        Some(
            slot.get_or_init(|| {
                Arc::new(Encoded::new(
                    Kind::Delta,
                    Body::Delta(delta(from, &base, &target, current)),
                ))
            })
            .clone(),
        )
    }
}

/// What turns the version `base` describes into `current`.
fn delta(from: &str, base: &Index, now: &Index, current: &Published) -> Delta {
    let snapshot: &Snapshot = &current.compiled.snapshot;
    let routes = snapshot
        .routes
        .iter()
        .filter(|r| base.routes.get(&r.name) != now.routes.get(&r.name))
        .cloned()
        .collect();
    let clusters = snapshot
        .clusters
        .iter()
        .filter(|c| base.clusters.get(&c.name) != now.clusters.get(&c.name))
        .cloned()
        .collect();
    let mut removed_routes: Vec<String> = base
        .routes
        .keys()
        .filter(|n| !now.routes.contains_key(*n))
        .cloned()
        .collect();
    let mut removed_clusters: Vec<String> = base
        .clusters
        .keys()
        .filter(|n| !now.clusters.contains_key(*n))
        .cloned()
        .collect();
    removed_routes.sort();
    removed_clusters.sort();
    Delta {
        base_version: from.to_owned(),
        routes,
        removed_routes,
        clusters,
        removed_clusters,
    }
}

/// Applies every update of the watch to `compiler` and publishes the result. Updates that
/// arrive while one is being compiled are applied together. Runs until the watch ends.
///
/// `coalesce` is the window after a change during which further changes are gathered into the
/// same compile and publish: a burst (a service scaled to fifty instances) becomes a few
/// versions instead of fifty, each change waiting at most `coalesce` more.
pub(crate) async fn follow(
    mut updates: mpsc::UnboundedReceiver<Update>,
    mut compiler: Compiler,
    store: Store,
    status: Arc<WatchStatus>,
    metrics: Arc<Metrics>,
    coalesce: Duration,
) {
    while let Some(update) = updates.recv().await {
        let mut changed = update.changed;
        let until = tokio::time::Instant::now() + coalesce;
        loop {
            while let Ok(more) = updates.try_recv() {
                changed.extend(more.changed);
            }
            match tokio::time::timeout_at(until, updates.recv()).await {
                Ok(Some(more)) => changed.extend(more.changed),
                Ok(None) | Err(_) => break,
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{Cluster, Route};

    fn compiled(version: &str, routes: &[&str], clusters: &[(&str, u32)]) -> Compiled {
        Compiled {
            snapshot: Snapshot {
                routes: routes
                    .iter()
                    .map(|name| Route {
                        name: (*name).into(),
                        cluster: (*name).into(),
                        ..Default::default()
                    })
                    .collect(),
                clusters: clusters
                    .iter()
                    .map(|(name, weight)| Cluster {
                        name: (*name).into(),
                        endpoints: vec![berth_proto::v1::Endpoint {
                            address: "127.0.0.1".into(),
                            port: 80,
                            weight: *weight,
                            id: "a".into(),
                        }],
                        ..Default::default()
                    })
                    .collect(),
            },
            version: version.into(),
            errors: Vec::new(),
            digests: Default::default(),
        }
    }

    fn decode(encoded: &Encoded) -> Body {
        RouteUpdate::decode(encoded.body.as_ref())
            .expect("decodes")
            .body
            .expect("has a body")
    }

    #[test]
    fn deltas_carry_what_changed_since_a_recent_version_and_are_encoded_once() {
        let store = Store::new();
        store.publish(compiled("v1", &["a", "b"], &[("a", 1), ("b", 1)]));
        store.publish(compiled("v2", &["a", "c"], &[("a", 2), ("c", 1)]));
        let current = store.current().expect("published");
        let encoded = store.delta("v1", &current).expect("v1 is recent");
        assert_eq!(encoded.kind, Kind::Delta);
        let Body::Delta(delta) = decode(&encoded) else {
            panic!("not a delta")
        };
        assert_eq!(delta.base_version, "v1");
        let names = |items: &[Route]| items.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&delta.routes), ["c"]);
        assert_eq!(delta.removed_routes, ["b"]);
        let clusters: Vec<&str> = delta.clusters.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(clusters, ["a", "c"]);
        assert_eq!(delta.removed_clusters, ["b"]);
        // The same delta is shared, not computed again.
        let again = store.delta("v1", &current).expect("v1 is recent");
        assert!(Arc::ptr_eq(&encoded, &again));
        assert!(Arc::ptr_eq(&current.full(), &current.full()));
        // Unknown and current versions have no delta.
        assert!(store.delta("v0", &current).is_none());
        assert!(store.delta("v2", &current).is_none());
        assert_eq!(store.behind_since("v2"), None);
        assert!(store.behind_since("v1").is_some());
    }

    #[test]
    fn only_the_last_versions_are_remembered() {
        let store = Store::new();
        for i in 0..=HISTORY {
            store.publish(compiled(&format!("v{i}"), &["a"], &[("a", i as u32 + 1)]));
        }
        let current = store.current().expect("published");
        assert!(store.delta("v0", &current).is_none(), "forgotten");
        assert!(store.delta("v1", &current).is_some());
    }

    #[tokio::test]
    async fn a_burst_of_changes_is_compiled_once() {
        let (tx, rx) = mpsc::unbounded_channel();
        let store = Store::new();
        let compiler = Compiler::new(berth_rules::Settings::default(), crate::watch::Health::Passing);
        let metrics = Arc::new(Metrics::default());
        let watch = Arc::new(WatchStatus::default());
        let mut published = store.subscribe();
        tokio::spawn(follow(
            rx,
            compiler,
            store.clone(),
            watch.clone(),
            metrics.clone(),
            Duration::from_secs(2),
        ));
        // Ten changes, spread over much less than the window.
        for _ in 0..10 {
            tx.send(Update {
                changed: Default::default(),
            })
            .expect("open");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        published.changed().await.expect("published");
        let text = metrics.render(None, &watch, &Arc::default());
        assert!(
            text.lines()
                .any(|l| l == "berth_control_compile_duration_seconds_count 1"),
            "{text}"
        );
    }
}
