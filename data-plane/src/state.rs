//! The proxy's shared state, and the one place that changes routing.
//!
//! For: holding the current route table (swapped whole with arc-swap, so the request path reads it
//! without locks) and the control-plane connection status; applying a [`RouteUpdate`] — build a new
//! table, swap it in, answer ACK or NACK. Nothing else in the binary writes the table.
//! Not for: talking to the control plane (see `stream`) or serving requests (see `proxy`).

use std::sync::Arc;

use arc_swap::{ArcSwapOption, Guard};
use berth_proto::v1::{proxy_message, route_update, Ack, Nack, ProxyMessage, RouteUpdate};

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
}

impl State {
    pub(crate) fn new(node_id: String, entrypoints: Vec<String>) -> Self {
        Self {
            node_id,
            entrypoints,
            table: ArcSwapOption::empty(),
            control_plane: ArcSwapOption::empty(),
        }
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

    /// Applies one update from the control plane and returns the ACK or NACK to send back. On any
    /// rejection the current table stays in place.
    pub(crate) fn apply(&self, update: &RouteUpdate) -> ProxyMessage {
        let version = update.version.as_str();
        let nonce = update.nonce.as_str();
        let result = match &update.body {
            Some(route_update::Body::Snapshot(snapshot)) => {
                let previous = self.table.load_full();
                match RouteTable::build(version, snapshot, &self.entrypoints, previous.as_deref()) {
                    Ok(table) => {
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
                    Err(rejected) => Err(rejected.to_string()),
                }
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
            Ok(()) => proxy_message::Kind::Ack(Ack {
                version: version.to_owned(),
                nonce: nonce.to_owned(),
            }),
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
}
