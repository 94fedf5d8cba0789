//! The proxy's shared state, and the one place that changes routing.
//!
//! For: holding the current route table (swapped whole with arc-swap, so the request path reads it
//! without locks), the control-plane connection status, where the table came from (a control
//! plane, or the snapshot cache at start) and whether the proxy is draining; applying a
//! [`RouteUpdate`] — build a new table, swap it in, answer ACK or NACK, hand the snapshot to the
//! cache writer. Nothing else in the binary writes the table.
//! Not for: talking to the control plane (see `stream`), the cache file (see `cache`) or serving
//! requests (see `proxy`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::{ArcSwapOption, Guard};
use berth_proto::v1::{proxy_message, route_update, Ack, Nack, ProxyMessage, RouteUpdate, Snapshot};

use crate::cache::{self, CachedSnapshot};
use crate::table::RouteTable;

/// State shared by the listeners, the admin server and the stream client.
#[derive(Debug)]
pub(crate) struct State {
    node_id: String,
    /// Entrypoint names, in listener order (a listener knows its index).
    entrypoints: Vec<String>,
    table: ArcSwapOption<RouteTable>,
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
            table: ArcSwapOption::empty(),
            control_plane: ArcSwapOption::empty(),
            cache: None,
            from_cache: ArcSwapOption::empty(),
            draining: AtomicBool::new(false),
        }
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
            Some(route_update::Body::Snapshot(snapshot)) => {
                let applied = self.swap_in(version, snapshot);
                if applied.is_ok() {
                    if let Some(writer) = &self.cache {
                        writer.offer(version, snapshot);
                    }
                }
                applied
            }
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
            None => Err("update carries neither a snapshot nor up_to_date".to_owned()),
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

    /// Builds a table from `snapshot` (validating it) and swaps it in; the rejection's text
    /// otherwise.
    fn swap_in(&self, version: &str, snapshot: &Snapshot) -> Result<(), String> {
        let previous = self.table.load_full();
        let table = RouteTable::build(version, snapshot, &self.entrypoints, previous.as_deref())
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
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
