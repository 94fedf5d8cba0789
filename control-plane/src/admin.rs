//! The admin HTTP API: health for load balancers and orchestration, JSON views for operators.
//!
//! - `GET /healthz`: 200 once the catalog has been read and a snapshot published, else 503;
//!   the body says what the watch waits for, if anything (Consul unreachable after the first
//!   read keeps 200: the last snapshot is still served).
//! - `GET /metrics`: Prometheus text exposition (see `metrics` for what is counted).
//! - `GET /api/watch`: how the watch of Consul is doing: synced or waiting and for what, the
//!   requests it made, the services it re-read and recompiled.
//! - `GET /api/snapshot`: the current version, its routes (with endpoint addresses) and the
//!   routes that were rejected, each naming the service and the tag at fault.
//! - `GET /api/proxies`: the connected proxies (node id, address, entrypoints, build, connected
//!   since), the version each has ACKed, whether it is behind the current version and for how
//!   long (`lag_seconds`), and its last NACK with the error.
//!
//! Read-only: nothing here changes what is routed.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use std::sync::Arc;

use crate::metrics::Metrics;
use crate::server::Proxies;
use crate::store::Store;
use crate::watch::WatchStatus;

#[derive(Clone)]
struct AdminState {
    store: Store,
    proxies: Proxies,
    watch: Arc<WatchStatus>,
    metrics: Arc<Metrics>,
}

pub(crate) fn router(
    store: Store,
    proxies: Proxies,
    watch: Arc<WatchStatus>,
    metrics: Arc<Metrics>,
) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/api/snapshot", get(snapshot))
        .route("/api/proxies", get(proxies_list))
        .route("/api/watch", get(watch_status))
        .with_state(AdminState {
            store,
            proxies,
            watch,
            metrics,
        })
}

async fn healthz(State(state): State<AdminState>) -> Response {
    let waiting = state.watch.waiting_for();
    match (state.store.current(), waiting) {
        (Some(_), None) => (StatusCode::OK, "ok\n".to_string()).into_response(),
        (Some(_), Some(what)) => (
            StatusCode::OK,
            format!("ok: serving the last snapshot; waiting for {what}\n"),
        )
            .into_response(),
        (None, what) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "waiting to read the Consul catalog{}\n",
                what.map(|w| format!(": {w}")).unwrap_or_default()
            ),
        )
            .into_response(),
    }
}

async fn metrics_text(State(state): State<AdminState>) -> Response {
    let current = state.store.current();
    let text = state
        .metrics
        .render(current.as_deref(), &state.watch, &state.proxies);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn watch_status(State(state): State<AdminState>) -> Json<Value> {
    Json(state.watch.to_json())
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
            let cluster = snap.cluster(&route.cluster);
            let endpoints: Vec<Value> = cluster
                .map(|c| {
                    c.endpoints
                        .iter()
                        .map(|e| json!({ "address": join_host_port(&e.address, e.port), "weight": e.weight, "id": e.id }))
                        .collect()
                })
                .unwrap_or_default();
            let middlewares: Vec<&str> = route.middlewares.iter().map(|m| m.name.as_str()).collect();
            json!({
                "name": route.name,
                "service": route.service,
                "origin": route.origin,
                "rule": route.matcher.as_ref().map(berth_rules::traefik_rule::render),
                "priority": route.priority,
                "entrypoints": route.entrypoints,
                "tls": route.tls,
                "middlewares": middlewares,
                "cluster": route.cluster,
                "scheme": cluster.map(|c| if c.scheme.is_empty() { "http" } else { c.scheme.as_str() }),
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
    let current = state.store.current();
    let current = current.as_ref().map(|c| &c.compiled.version);
    let now = std::time::SystemTime::now();
    let list: Vec<Value> = list
        .into_iter()
        .map(|proxy| {
            // Behind: the proxy has not ACKed the current version. Its lag is how long the
            // first version it lacks has existed (since it connected, when its version is not
            // one of the recent ones).
            let behind = current.is_some() && proxy.acked_version.as_ref() != current;
            let since = match (&proxy.acked_version, behind) {
                (_, false) => None,
                (Some(acked), true) => Some(state.store.behind_since(acked).unwrap_or(proxy.connected_since)),
                (None, true) => Some(proxy.connected_since),
            };
            let lag = since.map_or(0.0, |since| {
                now.duration_since(since).unwrap_or_default().as_secs_f64()
            });
            let mut value = json!(proxy);
            value["behind"] = json!(behind);
            value["lag_seconds"] = json!((lag * 1000.0).round() / 1000.0);
            value["current_version"] = json!(current);
            value
        })
        .collect();
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
