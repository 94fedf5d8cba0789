//! The admin HTTP API: health for load balancers and orchestration, JSON views for operators.
//!
//! - `GET /healthz`: 200 once the catalog has been read and a snapshot published, else 503.
//! - `GET /api/snapshot`: the current version, its routes (with endpoint addresses) and the
//!   routes that were rejected, each naming the service and the tag at fault.
//! - `GET /api/proxies`: the connected proxies, the version each has ACKed and its last NACK.
//!
//! Read-only: nothing here changes what is routed.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::server::Proxies;
use crate::store::Store;

#[derive(Clone)]
struct AdminState {
    store: Store,
    proxies: Proxies,
}

pub(crate) fn router(store: Store, proxies: Proxies) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/snapshot", get(snapshot))
        .route("/api/proxies", get(proxies_list))
        .with_state(AdminState { store, proxies })
}

async fn healthz(State(state): State<AdminState>) -> Response {
    match state.store.current() {
        Some(_) => (StatusCode::OK, "ok\n").into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting to read the Consul catalog\n",
        )
            .into_response(),
    }
}

async fn snapshot(State(state): State<AdminState>) -> Response {
    let Some(current) = state.store.current() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": "waiting to read the Consul catalog" })),
        )
            .into_response();
    };
    let snap = &current.compiled.snapshot;
    let routes: Vec<Value> = snap
        .routes
        .iter()
        .map(|route| {
            let endpoints: Vec<Value> = snap
                .clusters
                .iter()
                .find(|c| c.name == route.cluster)
                .map(|c| {
                    c.endpoints
                        .iter()
                        .map(|e| json!({ "address": join_host_port(&e.address, e.port), "weight": e.weight, "id": e.id }))
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "name": route.name,
                "service": route.service,
                "hosts": route.hosts,
                "path_prefix": route.path_prefix,
                "entrypoints": route.entrypoints,
                "cluster": route.cluster,
                "endpoints": endpoints,
            })
        })
        .collect();
    Json(json!({
        "version": current.compiled.version,
        "built_at": humantime::format_rfc3339_seconds(current.built_at).to_string(),
        "routes": routes,
        "errors": current.compiled.errors,
    }))
    .into_response()
}

async fn proxies_list(State(state): State<AdminState>) -> Json<Value> {
    let mut list: Vec<_> = state.proxies.iter().map(|entry| entry.value().clone()).collect();
    list.sort_by(|a, b| {
        a.node_id
            .cmp(&b.node_id)
            .then(a.connected_since.cmp(&b.connected_since))
    });
    Json(json!(list))
}

/// `host:port`, bracketing IPv6 literals.
fn join_host_port(host: &str, port: u32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
