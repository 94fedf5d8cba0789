//! The proxy's shared state, and the one place that changes routing.
//!
//! For: holding the current route table (swapped whole with arc-swap, so the request path reads it
//! without locks), the control-plane connection status, where the table came from (a control
//! plane, or the snapshot cache at start) and whether the proxy is draining; applying a
//! [`RouteUpdate`] — a full snapshot, or a delta merged into the snapshot held (only when it
//! starts from the version held) — build a new table, swap it in, answer ACK or NACK, hand the
//! full resulting snapshot to the cache writer. Nothing else in the binary writes the table.
//! Not for: talking to the control plane (see `stream`), the cache file (see `cache`) or serving
//! requests (see `proxy`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwapOption, Guard};
use berth_proto::v1::{proxy_message, route_update, Ack, Delta, Nack, ProxyMessage, RouteUpdate, Snapshot};

use crate::cache::{self, CachedSnapshot};
use crate::table::RouteTable;

/// State shared by the listeners, the admin server and the stream client.
#[derive(Debug)]
pub(crate) struct State {
    node_id: String,
    /// Entrypoint names, in listener order (a listener knows its index).
    entrypoints: Vec<String>,
    /// The names of the entrypoints that terminate TLS (`--tls`): only they serve TLS routes.
    tls_entrypoints: Vec<String>,
    table: ArcSwapOption<RouteTable>,
    /// The snapshot the table was built from, which deltas apply to (only the stream client
    /// reads and writes it; never the request path).
    snapshot: Mutex<Option<Arc<Snapshot>>>,
    /// The control plane a stream is currently open to, if any.
    control_plane: ArcSwapOption<String>,
    /// Where every applied snapshot is written (`--cache-dir`), if anywhere.
    cache: Option<cache::Writer>,
    /// Set while the table is the one read from the cache at start and no control plane has
    /// answered since.
    from_cache: ArcSwapOption<CachedFrom>,
    /// Set on SIGTERM/SIGINT: `/healthz` answers 503 so that load balancers stop sending traffic.
    draining: AtomicBool,
}

/// Where the table being served was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CachedFrom {
    pub version: String,
    pub dir: PathBuf,
}

/// What `/healthz` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Health {
    /// No snapshot applied yet: every request gets 503.
    NoSnapshot,
    /// Serving the snapshot read from the cache; no control plane has answered yet.
    FromCache(CachedFrom),
    /// Serving a snapshot a control plane sent or confirmed.
    Serving,
    /// Shutting down: still serving for now, but load balancers should stop sending traffic.
    Draining,
}

impl State {
    pub(crate) fn new(node_id: String, entrypoints: Vec<String>) -> Self {
        Self {
            node_id,
            entrypoints,
            tls_entrypoints: Vec::new(),
            table: ArcSwapOption::empty(),
            snapshot: Mutex::new(None),
            control_plane: ArcSwapOption::empty(),
            cache: None,
            from_cache: ArcSwapOption::empty(),
            draining: AtomicBool::new(false),
        }
    }

    /// Marks the entrypoints named in `names` as terminating TLS (before any table is built).
    pub(crate) fn with_tls_entrypoints(mut self, names: Vec<String>) -> Self {
        self.tls_entrypoints = names;
        self
    }

    /// Writes every snapshot applied from now on with `writer`.
    pub(crate) fn with_cache(mut self, writer: cache::Writer) -> Self {
        self.cache = Some(writer);
        self
    }

    pub(crate) fn node_id(&self) -> &str {
        &self.node_id
    }

    pub(crate) fn entrypoints(&self) -> &[String] {
        &self.entrypoints
    }

    /// The current table, for a short look (the request path drops it before awaiting the backend).
    #[inline]
    pub(crate) fn table(&self) -> Guard<Option<Arc<RouteTable>>> {
        self.table.load()
    }

    /// The version routing is based on, or `""` if no snapshot was applied yet (as sent in a Hello).
    pub(crate) fn version(&self) -> String {
        self.table
            .load()
            .as_ref()
            .map(|t| t.version().to_owned())
            .unwrap_or_default()
    }

    pub(crate) fn set_control_plane(&self, url: Option<&str>) {
        self.control_plane.store(url.map(|u| Arc::new(u.to_owned())));
    }

    pub(crate) fn control_plane(&self) -> Option<Arc<String>> {
        self.control_plane.load_full()
    }

    /// The cache the table was read from, while no control plane has answered since.
    pub(crate) fn cached_from(&self) -> Option<Arc<CachedFrom>> {
        self.from_cache.load_full()
    }

    /// From now on `/healthz` answers 503 (requests are still served).
    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub(crate) fn health(&self) -> Health {
        if self.draining.load(Ordering::SeqCst) {
            Health::Draining
        } else if let Some(cached) = self.cached_from() {
            Health::FromCache(CachedFrom::clone(&cached))
        } else if self.table.load().is_some() {
            Health::Serving
        } else {
            Health::NoSnapshot
        }
    }

    /// Applies the snapshot read from the cache at start, checked exactly as a pushed one. On
    /// success the proxy routes by it and says so in `/healthz` until a control plane answers.
    pub(crate) fn apply_cached(&self, cached: CachedSnapshot, dir: PathBuf) -> Result<(), String> {
        self.swap_in(&cached.version, &cached.snapshot)?;
        *self.held() = Some(Arc::new(cached.snapshot));
        self.from_cache.store(Some(Arc::new(CachedFrom {
            version: cached.version,
            dir,
        })));
        Ok(())
    }

    /// Applies one update from the control plane and returns the ACK or NACK to send back. On any
    /// rejection the current table stays in place.
    pub(crate) fn apply(&self, update: &RouteUpdate) -> ProxyMessage {
        let version = update.version.as_str();
        let nonce = update.nonce.as_str();
        let result = match &update.body {
            Some(route_update::Body::Snapshot(snapshot)) => self.apply_snapshot(version, snapshot.clone()),
            Some(route_update::Body::Delta(delta)) => self
                .merge(delta)
                .and_then(|merged| self.apply_snapshot(version, merged)),
            Some(route_update::Body::UpToDate(_)) => {
                let current = self.version();
                if current == version && !current.is_empty() {
                    tracing::debug!(version, "control plane confirms the current snapshot");
                    Ok(())
                } else {
                    Err(format!(
                        "up_to_date for version {version:?}, but this proxy routes by {:?}",
                        if current.is_empty() {
                            "nothing yet"
                        } else {
                            current.as_str()
                        }
                    ))
                }
            }
            None => Err("update carries neither a snapshot, a delta nor up_to_date".to_owned()),
        };
        let kind = match result {
            Ok(()) => {
                if let Some(cached) = self.from_cache.swap(None) {
                    tracing::info!(
                        cached = %cached.version,
                        version,
                        "a control plane answered; no longer serving from the cache"
                    );
                }
                proxy_message::Kind::Ack(Ack {
                    version: version.to_owned(),
                    nonce: nonce.to_owned(),
                })
            }
            Err(error) => {
                tracing::warn!(version, %error, "rejected update, keeping the previous snapshot");
                proxy_message::Kind::Nack(Nack {
                    version: version.to_owned(),
                    nonce: nonce.to_owned(),
                    error,
                })
            }
        };
        ProxyMessage { kind: Some(kind) }
    }

    /// Swaps in the whole state `snapshot` (pushed whole or merged from a delta) and offers it to
    /// the cache, which thus always holds the full merged state.
    fn apply_snapshot(&self, version: &str, snapshot: Snapshot) -> Result<(), String> {
        self.swap_in(version, &snapshot)?;
        if let Some(writer) = &self.cache {
            writer.offer(version, &snapshot);
        }
        *self.held() = Some(Arc::new(snapshot));
        Ok(())
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Option<Arc<Snapshot>>> {
        // Replaced whole under the lock: a panicking holder leaves no half-written state.
        self.snapshot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The state `delta` leads to from the one held, if the delta starts from it.
    fn merge(&self, delta: &Delta) -> Result<Snapshot, String> {
        let current = self.version();
        let held = self.held().clone();
        let held = match held {
            Some(held) if !current.is_empty() && current == delta.base_version => held,
            _ => {
                return Err(format!(
                    "delta from version {:?}, but this proxy routes by {:?}: a full snapshot is needed",
                    clip(&delta.base_version),
                    if current.is_empty() {
                        "nothing yet"
                    } else {
                        current.as_str()
                    }
                ))
            }
        };
        let mut routes: BTreeMap<&str, &berth_proto::v1::Route> =
            held.routes.iter().map(|r| (r.name.as_str(), r)).collect();
        let mut clusters: BTreeMap<&str, &berth_proto::v1::Cluster> =
            held.clusters.iter().map(|c| (c.name.as_str(), c)).collect();
        for name in &delta.removed_routes {
            routes.remove(name.as_str());
        }
        for name in &delta.removed_clusters {
            clusters.remove(name.as_str());
        }
        for route in &delta.routes {
            routes.insert(route.name.as_str(), route);
        }
        for cluster in &delta.clusters {
            clusters.insert(cluster.name.as_str(), cluster);
        }
        Ok(Snapshot {
            routes: routes.into_values().cloned().collect(),
            clusters: clusters.into_values().cloned().collect(),
        })
    }

    /// Builds a table from `snapshot` (validating it) and swaps it in; the rejection's text
    /// otherwise.
    fn swap_in(&self, version: &str, snapshot: &Snapshot) -> Result<(), String> {
        let previous = self.table.load_full();
        let table = RouteTable::build_on(
            version,
            snapshot,
            &self.entrypoints,
            &self.tls_entrypoints,
            previous.as_deref(),
        )
        .map_err(|rejected| rejected.to_string())?;
        let routes = table.routes().len();
        self.table.store(Some(Arc::new(table)));
        tracing::info!(
            version,
            routes,
            clusters = snapshot.clusters.len(),
            "applied snapshot"
        );
        Ok(())
    }
}

/// At most 64 bytes of a text the control plane sent, for an error that is logged.
fn clip(text: &str) -> &str {
    match text.char_indices().nth(64) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::testing::{cluster, endpoint, host, route, snapshot, update};
    use berth_proto::v1::UpToDate;

    fn web(address: &str) -> berth_proto::v1::Snapshot {
        snapshot(
            vec![route("web", host("web.example"), "web")],
            vec![cluster("web", vec![endpoint(address, 80, 1)])],
        )
    }

    fn raw(version: &str, nonce: &str, body: route_update::Body) -> RouteUpdate {
        RouteUpdate {
            version: version.into(),
            nonce: nonce.into(),
            body: Some(body),
        }
    }

    #[test]
    fn ack_swaps_nack_keeps() {
        let state = State::new("n".into(), vec!["http".into()]);
        assert_eq!(state.version(), "");
        let reply = state.apply(&update("v1", "1", web("127.0.0.1")));
        assert_eq!(
            reply.kind,
            Some(proxy_message::Kind::Ack(Ack {
                version: "v1".into(),
                nonce: "1".into()
            }))
        );
        assert_eq!(state.version(), "v1");

        let reply = state.apply(&update("v2", "2", web("bad address")));
        match reply.kind {
            Some(proxy_message::Kind::Nack(nack)) => {
                assert_eq!((nack.version.as_str(), nack.nonce.as_str()), ("v2", "2"));
                assert!(nack.error.contains("\"web\""), "{}", nack.error);
                assert!(nack.error.contains("bad address"), "{}", nack.error);
            }
            other => panic!("expected a NACK, got {other:?}"),
        }
        assert_eq!(state.version(), "v1", "the previous table stays");

        let mut unknown = web("127.0.0.1");
        unknown.routes[0].requires.push("matcher/telepathy".into());
        let reply = state.apply(&update("v3", "3", unknown));
        match reply.kind {
            Some(proxy_message::Kind::Nack(nack)) => {
                assert!(nack.error.contains("matcher/telepathy"), "{}", nack.error)
            }
            other => panic!("expected a NACK, got {other:?}"),
        }
        assert_eq!(state.version(), "v1");

        let reply = state.apply(&raw("v1", "4", route_update::Body::UpToDate(UpToDate {})));
        assert!(matches!(reply.kind, Some(proxy_message::Kind::Ack(_))));
        let reply = state.apply(&raw("v9", "5", route_update::Body::UpToDate(UpToDate {})));
        assert!(matches!(reply.kind, Some(proxy_message::Kind::Nack(_))));
        let reply = state.apply(&RouteUpdate {
            version: "v4".into(),
            nonce: "6".into(),
            body: None,
        });
        assert!(matches!(reply.kind, Some(proxy_message::Kind::Nack(_))));
        assert_eq!(state.version(), "v1");
    }

    fn delta(base: &str, routes: Vec<berth_proto::v1::Route>, removed_routes: &[&str]) -> Delta {
        // Through `snapshot` for the `requires` lists the control plane fills in.
        let filled = snapshot(routes, vec![cluster("api", vec![endpoint("127.0.0.2", 80, 1)])]);
        Delta {
            base_version: base.into(),
            routes: filled.routes,
            removed_routes: removed_routes.iter().map(|r| r.to_string()).collect(),
            clusters: filled.clusters,
            removed_clusters: Vec::new(),
        }
    }

    #[test]
    fn deltas_apply_to_their_base_version_only() {
        let state = State::new("n".into(), vec!["http".into()]);
        // No state yet: a delta cannot apply.
        let reply = state.apply(&raw(
            "v2",
            "1",
            route_update::Body::Delta(delta("v1", vec![], &[])),
        ));
        assert!(
            matches!(reply.kind, Some(proxy_message::Kind::Nack(_))),
            "{reply:?}"
        );
        state.apply(&update("v1", "2", web("127.0.0.1")));

        // A delta from another version is refused, naming both; the table stays.
        let add_api = delta("v0", vec![route("api", host("api.example"), "api")], &[]);
        let reply = state.apply(&raw("v2", "3", route_update::Body::Delta(add_api)));
        match reply.kind {
            Some(proxy_message::Kind::Nack(nack)) => {
                assert!(
                    nack.error.contains("\"v0\"") && nack.error.contains("\"v1\""),
                    "{}",
                    nack.error
                )
            }
            other => panic!("expected a NACK, got {other:?}"),
        }
        assert_eq!(state.version(), "v1");

        // From the version held: merged and applied.
        let add_api = delta("v1", vec![route("api", host("api.example"), "api")], &[]);
        let reply = state.apply(&raw("v2", "4", route_update::Body::Delta(add_api)));
        assert!(
            matches!(reply.kind, Some(proxy_message::Kind::Ack(_))),
            "{reply:?}"
        );
        assert_eq!(state.version(), "v2");
        let held = state.held().clone().expect("held");
        let names: Vec<&str> = held.routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["api", "web"]);
        assert_eq!(state.table().as_ref().map(|t| t.routes().len()), Some(2));

        // Removing a route; a result that does not validate is NACKed as a whole.
        let mut remove_web = delta("v2", vec![], &["web"]);
        remove_web.removed_clusters.push("web".into());
        let reply = state.apply(&raw("v3", "5", route_update::Body::Delta(remove_web)));
        assert!(
            matches!(reply.kind, Some(proxy_message::Kind::Ack(_))),
            "{reply:?}"
        );
        let held = state.held().clone().expect("held");
        assert_eq!(held.routes.len(), 1);
        assert_eq!(held.clusters.len(), 1);
        // The route "api" would be left without its cluster.
        let mut broken = delta("v3", vec![], &[]);
        broken.clusters.clear();
        broken.removed_clusters.push("api".into());
        let reply = state.apply(&raw("v4", "6", route_update::Body::Delta(broken)));
        assert!(
            matches!(reply.kind, Some(proxy_message::Kind::Nack(_))),
            "{reply:?}"
        );
        assert_eq!(state.version(), "v3");
    }

    #[test]
    fn a_cached_snapshot_serves_until_a_control_plane_answers() {
        let state = State::new("n".into(), vec!["http".into()]);
        assert_eq!(state.health(), Health::NoSnapshot);
        let cached = CachedSnapshot {
            version: "v1".into(),
            snapshot: web("127.0.0.1"),
        };
        state
            .apply_cached(cached, "/cache".into())
            .expect("a valid cached snapshot applies");
        assert_eq!(state.version(), "v1");
        assert_eq!(
            state.health(),
            Health::FromCache(CachedFrom {
                version: "v1".into(),
                dir: "/cache".into()
            })
        );
        // A NACKed push leaves the cached table, and says so still.
        let reply = state.apply(&update("v2", "1", web("bad address")));
        assert!(matches!(reply.kind, Some(proxy_message::Kind::Nack(_))));
        assert!(matches!(state.health(), Health::FromCache(_)));
        // The control plane confirms the cached version: served as its own from now on.
        let reply = state.apply(&raw("v1", "2", route_update::Body::UpToDate(UpToDate {})));
        assert!(matches!(reply.kind, Some(proxy_message::Kind::Ack(_))));
        assert_eq!(state.health(), Health::Serving);
        state.start_draining();
        assert_eq!(state.health(), Health::Draining);
    }

    #[test]
    fn an_invalid_cached_snapshot_is_not_applied() {
        let state = State::new("n".into(), vec!["http".into()]);
        let cached = CachedSnapshot {
            version: "v1".into(),
            snapshot: web("bad address"),
        };
        let error = state
            .apply_cached(cached, "/cache".into())
            .expect_err("rejected as a push would be");
        assert!(error.contains("bad address"), "{error}");
        assert_eq!(state.version(), "");
        assert_eq!(state.health(), Health::NoSnapshot);
    }

    #[tokio::test]
    async fn applied_snapshots_are_cached() {
        let dir = std::env::temp_dir().join(format!("berth-proxy-state-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        let cache = crate::cache::SnapshotCache::new(&dir);
        let state =
            State::new("n".into(), vec!["http".into()]).with_cache(cache::Writer::spawn(cache.clone(), None));
        let reply = state.apply(&update("v1", "1", web("127.0.0.1")));
        assert!(matches!(reply.kind, Some(proxy_message::Kind::Ack(_))));
        // A rejected push is not written.
        state.apply(&update("v2", "2", web("bad address")));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let cached = loop {
            if let Ok(Some(cached)) = cache.load() {
                break cached;
            }
            assert!(std::time::Instant::now() < deadline, "never cached");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(cached.version, "v1");
        assert_eq!(cache.load().expect("loads").expect("present").version, "v1");
        assert_eq!(cached.snapshot, web("127.0.0.1"));

        // A delta is cached as the whole state it leads to, which a restart can apply alone.
        let add_api = delta("v1", vec![route("api", host("api.example"), "api")], &[]);
        let reply = state.apply(&raw("v3", "3", route_update::Body::Delta(add_api)));
        assert!(
            matches!(reply.kind, Some(proxy_message::Kind::Ack(_))),
            "{reply:?}"
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let cached = loop {
            match cache.load() {
                Ok(Some(cached)) if cached.version == "v3" => break cached,
                _ => assert!(
                    std::time::Instant::now() < deadline,
                    "the delta's result never cached"
                ),
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        };
        let names: Vec<&str> = cached.snapshot.routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["api", "web"]);
        let restarted = State::new("n".into(), vec!["http".into()]);
        restarted
            .apply_cached(cached, dir.clone())
            .expect("the cached state applies alone");
        assert_eq!(restarted.version(), "v3");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
