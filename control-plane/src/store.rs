//! The snapshot store: the current snapshot, the recent versions deltas can start from, and the
//! loop that recompiles the services the watch says changed.
//!
//! Streams subscribe to the store's `watch` channel; a change wakes each of them once, however
//! many compiles happened meanwhile, so a slow proxy only ever receives the latest state.
//!
//! Every update a stream sends is encoded here, once, and shared by every stream that sends it
//! (see [`Encoded`]): the full snapshot of a version, and the delta between two versions (kept
//! while the target is the current version). Deltas can start from any of the last
//! [`HISTORY`] versions: the store keeps, for each, the names of the items that changed since
//! the version before it (not their snapshots), so a publication costs what changed, not the
//! catalog's size.
//! Bursts of changes are coalesced: [`follow`] compiles and publishes at most once per window.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use berth_proto::v1::route_update::Body;
use berth_proto::v1::{Delta, RouteUpdate, UpToDate};
use berth_proto::{cluster_digest, route_digest};
use bytes::Bytes;
use prost::Message as _;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::compile::{Changed, Compiled, Compiler, Items};
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
            .get_or_init(|| Arc::new(Encoded::snapshot(&self.compiled.snapshot)))
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

    /// A full snapshot, encoded from the shared items (as `Body::Snapshot` would be, without
    /// copying them into a `Snapshot` first).
    fn snapshot(items: &Items) -> Encoded {
        use prost::encoding::{encode_key, encode_varint, message, WireType};
        let mut inner = Vec::new();
        for route in &items.routes {
            message::encode(1, route.as_ref(), &mut inner);
        }
        for cluster in &items.clusters {
            message::encode(2, cluster.as_ref(), &mut inner);
        }
        let mut body = Vec::with_capacity(inner.len() + 16);
        // RouteUpdate.snapshot (field 3 of the `body` oneof).
        encode_key(3, WireType::LengthDelimited, &mut body);
        encode_varint(inner.len() as u64, &mut body);
        body.extend_from_slice(&inner);
        Encoded {
            kind: Kind::Full,
            body: Bytes::from(body),
            items: items.routes.len() + items.clusters.len(),
        }
    }

    pub(crate) fn up_to_date() -> Encoded {
        Encoded::new(Kind::UpToDate, Body::UpToDate(UpToDate {}))
    }
}

/// A recent version.
#[derive(Debug)]
struct Recent {
    version: String,
    built_at: SystemTime,
    /// What may differ from the version before it in the history (empty for the oldest).
    changed: Arc<Changed>,
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
    pub(crate) fn publish(&self, mut compiled: Compiled) -> bool {
        let (same, new_version, changed) = match self.tx.borrow().as_ref() {
            Some(c) => {
                let new_version = c.compiled.version != compiled.version;
                let changed = match compiled.changed.take() {
                    Some(changed) => changed,
                    None if new_version => differences(&c.compiled.snapshot, &compiled.snapshot),
                    None => Changed::default(),
                };
                (
                    !new_version && c.compiled.errors == compiled.errors,
                    new_version,
                    changed,
                )
            }
            None => (false, true, Changed::default()),
        };
        if same {
            return false;
        }
        let built_at = SystemTime::now();
        if new_version {
            let version = compiled.version.clone();
            let mut history = self.lock();
            // A version seen again (a change undone) moves to the end; what led to its old
            // place still leads to the version after it.
            if let Some(at) = history.recent.iter().position(|r| r.version == version) {
                if let Some(old) = history.recent.remove(at) {
                    if let Some(next) = history.recent.get_mut(at) {
                        if at > 0 {
                            let mut merged = Changed::clone(&old.changed);
                            merged.extend(&next.changed);
                            next.changed = Arc::new(merged);
                        } else {
                            next.changed = Arc::default();
                        }
                    }
                }
            }
            history.recent.push_back(Recent {
                version,
                built_at,
                changed: Arc::new(changed),
            });
            while history.recent.len() > HISTORY {
                history.recent.pop_front();
                if let Some(oldest) = history.recent.front_mut() {
                    oldest.changed = Arc::default();
                }
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
        let (since, slot) = {
            let mut history = self.lock();
            let target = history.recent.back()?;
            if target.version != current.compiled.version || from == target.version {
                return None;
            }
            let at = history.recent.iter().position(|r| r.version == from)?;
            let since: Vec<Arc<Changed>> = history
                .recent
                .iter()
                .skip(at + 1)
                .map(|r| r.changed.clone())
                .collect();
            let slot = history.deltas.entry(from.to_owned()).or_default().clone();
            (since, slot)
        };
        Some(
            slot.get_or_init(|| {
                let mut changed = Changed::default();
                for step in &since {
                    changed.extend(step);
                }
                Arc::new(Encoded::new(
                    Kind::Delta,
                    Body::Delta(delta(from, &changed, &current.compiled.snapshot)),
                ))
            })
            .clone(),
        )
    }
}

/// The names of the items that differ between `old` and `new` (by digest), for a snapshot that
/// does not say what changed.
fn differences(old: &Items, new: &Items) -> Changed {
    let routes = |items: &Items| -> HashMap<String, _> {
        items
            .routes
            .iter()
            .map(|r| (r.name.clone(), route_digest(r)))
            .collect()
    };
    let clusters = |items: &Items| -> HashMap<String, _> {
        items
            .clusters
            .iter()
            .map(|c| (c.name.clone(), cluster_digest(c)))
            .collect()
    };
    fn differ<D: PartialEq>(
        old: HashMap<String, D>,
        new: HashMap<String, D>,
    ) -> std::collections::BTreeSet<String> {
        let mut names: std::collections::BTreeSet<String> = old
            .iter()
            .filter(|(n, d)| new.get(*n) != Some(*d))
            .map(|(n, _)| n.clone())
            .collect();
        names.extend(
            new.iter()
                .filter(|(n, _)| !old.contains_key(*n))
                .map(|(n, _)| n.clone()),
        );
        names
    }
    Changed {
        routes: differ(routes(old), routes(new)),
        clusters: differ(clusters(old), clusters(new)),
    }
}

/// What turns the version `from` into `current`, given the names of every item that may have
/// changed between them: those still there are sent whole, the others are removed. (An item
/// changed and changed back is sent again: the proxy's upsert leaves it as it was.)
fn delta(from: &str, changed: &Changed, current: &Items) -> Delta {
    let mut delta = Delta {
        base_version: from.to_owned(),
        ..Delta::default()
    };
    for name in &changed.routes {
        match current.route(name) {
            Some(route) => delta.routes.push(berth_proto::v1::Route::clone(route)),
            None => delta.removed_routes.push(name.clone()),
        }
    }
    for name in &changed.clusters {
        match current.cluster(name) {
            Some(cluster) => delta.clusters.push(berth_proto::v1::Cluster::clone(cluster)),
            None => delta.removed_clusters.push(name.clone()),
        }
    }
    delta
}

/// Applies every update of the watch to `compiler` and publishes the result. Updates that
/// arrive while one is being compiled are applied together. Runs until the watch ends.
///
/// `coalesce` paces publications: a change that comes after a quiet spell is published at once;
/// changes that come within `coalesce` of the last publication are gathered until that window
/// ends and published together. So a single change waits for nothing, and a burst (a service
/// scaled to fifty instances) becomes a few versions instead of fifty, each change waiting at
/// most `coalesce` more.
pub(crate) async fn follow(
    mut updates: mpsc::UnboundedReceiver<Update>,
    mut compiler: Compiler,
    store: Store,
    status: Arc<WatchStatus>,
    metrics: Arc<Metrics>,
    coalesce: Duration,
) {
    // When the window opened by the last publication closes.
    let mut window_ends: Option<tokio::time::Instant> = None;
    while let Some(update) = updates.recv().await {
        let mut changed = update.changed;
        if let Some(until) = window_ends.filter(|until| *until > tokio::time::Instant::now()) {
            // Within the window of the last publication: gather until it closes.
            while let Ok(Some(more)) = tokio::time::timeout_at(until, updates.recv()).await {
                changed.extend(more.changed);
            }
        }
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
        window_ends = Some(tokio::time::Instant::now() + coalesce);
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
            snapshot: Items {
                routes: routes
                    .iter()
                    .map(|name| {
                        Arc::new(Route {
                            name: (*name).into(),
                            cluster: (*name).into(),
                            ..Default::default()
                        })
                    })
                    .collect(),
                clusters: clusters
                    .iter()
                    .map(|(name, weight)| {
                        Arc::new(Cluster {
                            name: (*name).into(),
                            endpoints: vec![berth_proto::v1::Endpoint {
                                address: "127.0.0.1".into(),
                                port: 80,
                                weight: *weight,
                                id: "a".into(),
                            }],
                            ..Default::default()
                        })
                    })
                    .collect(),
            },
            version: version.into(),
            errors: Vec::new(),
            changed: None,
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
    fn deltas_follow_the_compilers_changes_across_versions_and_undone_changes() {
        let with = |mut c: Compiled, routes: &[&str], clusters: &[&str]| {
            c.changed = Some(Changed {
                routes: routes.iter().map(|n| n.to_string()).collect(),
                clusters: clusters.iter().map(|n| n.to_string()).collect(),
            });
            c
        };
        let store = Store::new();
        store.publish(compiled("v1", &["a", "b"], &[("a", 1), ("b", 1)]));
        store.publish(with(
            compiled("v2", &["a", "b"], &[("a", 2), ("b", 1)]),
            &[],
            &["a"],
        ));
        store.publish(with(compiled("v3", &["a"], &[("a", 2)]), &["b"], &["b"]));
        // v2 again (b is back): v2's old place is forgotten, what led to it is kept.
        store.publish(with(
            compiled("v2", &["a", "b"], &[("a", 2), ("b", 1)]),
            &["b"],
            &["b"],
        ));
        let current = store.current().expect("published");
        let Body::Delta(d) = decode(&store.delta("v1", &current).expect("v1 is recent")) else {
            panic!("not a delta")
        };
        let names = |items: &[Route]| items.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&d.routes), ["b"]);
        let clusters: Vec<&str> = d.clusters.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(clusters, ["a", "b"]);
        assert!(d.removed_routes.is_empty() && d.removed_clusters.is_empty());
        let Body::Delta(d) = decode(&store.delta("v3", &current).expect("v3 is recent")) else {
            panic!("not a delta")
        };
        assert_eq!(names(&d.routes), ["b"]);
        // The full snapshot, encoded from the shared items, decodes to the same items.
        let Body::Snapshot(full) = decode(&current.full()) else {
            panic!("not a snapshot")
        };
        assert_eq!(names(&full.routes), ["a", "b"]);
        assert_eq!(full.clusters[0].endpoints[0].weight, 2);
        assert_eq!(current.full().items, 4);
        // Byte for byte what prost encodes for the same snapshot.
        let snapshot = berth_proto::v1::Snapshot {
            routes: current
                .compiled
                .snapshot
                .routes
                .iter()
                .map(|r| Route::clone(r))
                .collect(),
            clusters: current
                .compiled
                .snapshot
                .clusters
                .iter()
                .map(|c| Cluster::clone(c))
                .collect(),
        };
        assert_eq!(
            current.full().body,
            Encoded::new(Kind::Full, Body::Snapshot(snapshot)).body
        );
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
        let watch_for_render = watch.clone();
        let compiles = move |metrics: &Metrics| {
            metrics
                .render(None, &watch_for_render, &Arc::default())
                .lines()
                .find_map(|l| {
                    l.strip_prefix("berth_control_compile_duration_seconds_count ")
                        .map(str::to_owned)
                })
        };
        // Waits (at most 10 s) until `n` compiles are counted; returns when.
        let compiled = |n: &'static str| {
            let metrics = metrics.clone();
            let compiles = compiles.clone();
            async move {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                while compiles(&metrics).as_deref() != Some(n) {
                    assert!(tokio::time::Instant::now() < deadline, "never compiled {n} times");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                tokio::time::Instant::now()
            }
        };
        // A first change after a quiet spell is compiled and published at once, long before
        // the window would close.
        let started = tokio::time::Instant::now();
        tx.send(Update::default()).expect("open");
        published.changed().await.expect("published");
        let first = compiled("1").await;
        assert!(first - started < Duration::from_secs(1), "{:?}", first - started);
        // Ten more within the window that publication opened: gathered into one compile when
        // it closes.
        for _ in 0..10 {
            tx.send(Update::default()).expect("open");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let second = compiled("2").await;
        assert!(
            second - first >= Duration::from_secs(2) - Duration::from_millis(50),
            "{:?}",
            second - first
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            compiles(&metrics).as_deref(),
            Some("2"),
            "the burst was compiled once"
        );
    }
}
