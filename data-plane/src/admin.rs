//! The admin HTTP server: health and routing state for operators and orchestrators.
//!
//! For: `GET /healthz` (200 `ok` once a snapshot is applied, 503 before) and `GET /api/snapshot`
//! (the applied routing state as JSON). Read-only.
//! Not for: changing anything; routing changes only come from the control plane (see `stream`).

use std::sync::Arc;

use axum::extract::State as AxumState;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::state::State;

/// The JSON of `GET /api/snapshot`.
#[derive(Debug, Serialize)]
pub(crate) struct SnapshotView {
    /// Version of the applied snapshot, `null` before the first.
    version: Option<String>,
    node_id: String,
    /// Whether a stream to a control plane is open right now.
    connected: bool,
    /// The control plane the stream is open to, `null` when not connected.
    control_plane: Option<String>,
    routes: Vec<RouteView>,
}

#[derive(Debug, Serialize)]
struct RouteView {
    name: String,
    service: String,
    hosts: Vec<String>,
    path_prefix: String,
    /// As sent by the control plane: empty means every entrypoint.
    entrypoints: Vec<String>,
    cluster: String,
    /// `address:port` of each endpoint, in snapshot order.
    endpoints: Vec<String>,
}

pub(crate) fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/snapshot", get(snapshot))
        .with_state(state)
}

/// Serves the admin API until `shutdown` turns true.
pub(crate) async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}

async fn healthz(AxumState(state): AxumState<Arc<State>>) -> (StatusCode, &'static str) {
    if state.table().is_some() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no snapshot applied yet")
    }
}

async fn snapshot(AxumState(state): AxumState<Arc<State>>) -> Json<SnapshotView> {
    Json(view(&state))
}

pub(crate) fn view(state: &State) -> SnapshotView {
    let table = state.table();
    let control_plane = state.control_plane().map(|url| url.as_str().to_owned());
    SnapshotView {
        version: table.as_ref().map(|t| t.version().to_owned()),
        node_id: state.node_id().to_owned(),
        connected: control_plane.is_some(),
        control_plane,
        routes: table
            .as_ref()
            .map(|t| {
                t.routes()
                    .iter()
                    .map(|r| RouteView {
                        name: r.name.clone(),
                        service: r.service.clone(),
                        hosts: r.hosts.clone(),
                        path_prefix: r.path_prefix.clone(),
                        entrypoints: r.entrypoints.clone(),
                        cluster: r.cluster.name.clone(),
                        endpoints: r
                            .cluster
                            .endpoints
                            .iter()
                            .map(|e| e.authority.as_str().to_owned())
                            .collect(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{route_update, Cluster, Endpoint, Route, RouteUpdate, Snapshot};

    #[test]
    fn json_shape() {
        let state = State::new("edge-1".into(), vec!["http".into()]);
        let empty = serde_json::to_value(view(&state)).expect("serializes");
        assert_eq!(
            empty,
            serde_json::json!({"version": null, "node_id": "edge-1", "connected": false, "control_plane": null, "routes": []})
        );
        state.set_control_plane(Some("http://127.0.0.1:18000"));
        state.apply(&RouteUpdate {
            version: "abc".into(),
            nonce: "1".into(),
            body: Some(route_update::Body::Snapshot(Snapshot {
                routes: vec![Route {
                    name: "web".into(),
                    hosts: vec!["Web.Example".into()],
                    path_prefix: "/".into(),
                    entrypoints: vec![],
                    cluster: "web".into(),
                    service: "web-svc".into(),
                }],
                clusters: vec![Cluster {
                    name: "web".into(),
                    endpoints: vec![
                        Endpoint {
                            address: "127.0.0.1".into(),
                            port: 9090,
                            weight: 1,
                            id: "a".into(),
                        },
                        Endpoint {
                            address: "::1".into(),
                            port: 9091,
                            weight: 1,
                            id: "b".into(),
                        },
                    ],
                }],
            })),
        });
        let full = serde_json::to_value(view(&state)).expect("serializes");
        assert_eq!(
            full,
            serde_json::json!({
                "version": "abc", "node_id": "edge-1", "connected": true, "control_plane": "http://127.0.0.1:18000",
                "routes": [{"name": "web", "service": "web-svc", "hosts": ["web.example"], "path_prefix": "/",
                            "entrypoints": [], "cluster": "web", "endpoints": ["127.0.0.1:9090", "[::1]:9091"]}]
            })
        );
    }
}
