//! The admin HTTP server: health and routing state for operators and orchestrators.
//!
//! For: `GET /healthz` (200 once a snapshot is applied — `ok`, or which cached snapshot it serves
//! while no control plane has answered since start; 503 before, and while draining on shutdown;
//! the admin address stays up until the process exits) and `GET /api/snapshot`
//! (the applied routing state as JSON: each route with its rule rendered in Traefik v3 syntax,
//! its middlewares and endpoints, in the order routes are tried; each cluster) and `GET /metrics`
//! (Prometheus text, see `metrics`). Read-only.
//! Not for: changing anything; routing changes only come from the control plane (see `stream`).

use std::sync::Arc;

use axum::extract::State as AxumState;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::state::{Health, State};
use crate::table::{Cluster, HostHeader, Route};

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
    /// Whether the snapshot served was read from `--cache-dir` at start and no control plane
    /// has answered since.
    from_cache: bool,
    /// Every route, in the order they are tried (priority, then order, then name).
    routes: Vec<RouteView>,
    /// Every cluster, by name.
    clusters: Vec<ClusterView>,
}

#[derive(Debug, Serialize)]
struct RouteView {
    name: String,
    service: String,
    /// Where the route came from (dialect and router), as the control plane said.
    origin: String,
    /// The matcher in Traefik v3 rule syntax.
    rule: String,
    /// The hosts the route is indexed under (`*.suffix` for a wildcard); empty when it is tried
    /// for every host (a host regexp, or no host condition).
    hosts: Vec<String>,
    priority: i64,
    order: u64,
    /// As sent by the control plane: empty means every entrypoint.
    entrypoints: Vec<String>,
    /// Served only on TLS entrypoints; shown only when set.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    tls: bool,
    middlewares: Vec<MiddlewareView>,
    cluster: String,
    /// `address:port` of each endpoint, in snapshot order.
    endpoints: Vec<String>,
}

#[derive(Debug, Serialize)]
struct MiddlewareView {
    name: String,
    kind: &'static str,
}

#[derive(Debug, Serialize)]
struct ClusterView {
    name: String,
    /// `http` or `https`.
    scheme: &'static str,
    /// `pass` (the client's Host) or `endpoint` (the endpoint's address).
    host_header: &'static str,
    /// The sticky cookie's name, `null` without stickiness.
    sticky_cookie: Option<String>,
    endpoints: Vec<EndpointView>,
}

#[derive(Debug, Serialize)]
struct EndpointView {
    address: String,
    weight: u32,
    id: String,
}

pub(crate) fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/snapshot", get(snapshot))
        .route("/metrics", get(metrics))
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

async fn healthz(AxumState(state): AxumState<Arc<State>>) -> (StatusCode, String) {
    health_answer(&state.health())
}

/// The status and body of `/healthz` in each state.
fn health_answer(health: &Health) -> (StatusCode, String) {
    match health {
        Health::Serving => (StatusCode::OK, "ok".to_owned()),
        Health::FromCache(cached) => (
            StatusCode::OK,
            format!(
                "serving the cached snapshot {} from {}; no control plane yet",
                cached.version,
                cached.dir.display()
            ),
        ),
        Health::NoSnapshot => (
            StatusCode::SERVICE_UNAVAILABLE,
            "no snapshot applied yet".to_owned(),
        ),
        Health::Draining => (
            StatusCode::SERVICE_UNAVAILABLE,
            "draining: shutting down, send no new traffic here".to_owned(),
        ),
    }
}

async fn metrics(AxumState(state): AxumState<Arc<State>>) -> impl axum::response::IntoResponse {
    (
        [(
            http::header::CONTENT_TYPE,
            berth_support::prometheus::CONTENT_TYPE,
        )],
        crate::metrics::render(crate::metrics::global(), &state),
    )
}

async fn snapshot(AxumState(state): AxumState<Arc<State>>) -> Json<SnapshotView> {
    Json(view(&state))
}

pub(crate) fn view(state: &State) -> SnapshotView {
    let table = state.table();
    let control_plane = state.control_plane().map(|url| url.as_str().to_owned());
    let (routes, clusters) = match table.as_ref() {
        Some(t) => (t.routes().iter().map(|r| route_view(r)).collect(), {
            let mut clusters: Vec<ClusterView> = t.clusters().values().map(|c| cluster_view(c)).collect();
            clusters.sort_by(|a, b| a.name.cmp(&b.name));
            clusters
        }),
        None => (Vec::new(), Vec::new()),
    };
    SnapshotView {
        version: table.as_ref().map(|t| t.version().to_owned()),
        node_id: state.node_id().to_owned(),
        connected: control_plane.is_some(),
        control_plane,
        from_cache: state.cached_from().is_some(),
        routes,
        clusters,
    }
}

fn route_view(r: &Route) -> RouteView {
    RouteView {
        name: r.name.clone(),
        service: r.service.clone(),
        origin: r.origin.clone(),
        rule: r.rule.clone(),
        hosts: r.hosts.clone(),
        priority: r.priority,
        order: r.order,
        entrypoints: r.entrypoints.clone(),
        tls: r.tls,
        middlewares: r
            .middlewares
            .iter()
            .map(|m| MiddlewareView {
                name: m.name.clone(),
                kind: m.kind(),
            })
            .collect(),
        cluster: r.cluster.name.clone(),
        endpoints: r
            .cluster
            .endpoints
            .iter()
            .map(|e| e.authority.as_str().to_owned())
            .collect(),
    }
}

fn cluster_view(c: &Cluster) -> ClusterView {
    ClusterView {
        name: c.name.clone(),
        scheme: c.scheme.as_str(),
        host_header: match c.host_header {
            HostHeader::Pass => "pass",
            HostHeader::Endpoint => "endpoint",
        },
        sticky_cookie: c.sticky.as_ref().map(|s| s.cookie.clone()),
        endpoints: c
            .endpoints
            .iter()
            .map(|e| EndpointView {
                address: e.authority.as_str().to_owned(),
                weight: e.weight,
                id: e.id.clone(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{
        host_matcher, matcher, middleware, route_update, Cluster as PCluster, Endpoint, HostMatcher, Matcher,
        Middleware, Route as PRoute, RouteUpdate, Snapshot, StickyCookie, StripPrefix,
    };

    fn route(name: &str, priority: i64) -> PRoute {
        let mut r = PRoute {
            name: name.into(),
            cluster: "web".into(),
            service: "web-svc".into(),
            origin: "traefik/v3 router web@consulcatalog".into(),
            priority,
            matcher: Some(Matcher {
                kind: Some(matcher::Kind::Host(HostMatcher {
                    kind: Some(host_matcher::Kind::Exact("web.example".into())),
                })),
            }),
            ..Default::default()
        };
        r.requires = berth_model::required_features(&r)
            .into_iter()
            .map(String::from)
            .collect();
        r
    }

    #[test]
    fn health_answers() {
        let (status, body) = health_answer(&Health::NoSnapshot);
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "no snapshot applied yet")
        );
        assert_eq!(health_answer(&Health::Serving), (StatusCode::OK, "ok".to_owned()));
        let (status, body) = health_answer(&Health::FromCache(crate::state::CachedFrom {
            version: "abc".into(),
            dir: "/var/cache/berth".into(),
        }));
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            "serving the cached snapshot abc from /var/cache/berth; no control plane yet"
        );
        let (status, body) = health_answer(&Health::Draining);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.starts_with("draining"), "{body}");
    }

    #[test]
    fn json_shape() {
        let state = State::new("edge-1".into(), vec!["http".into()]);
        let empty = serde_json::to_value(view(&state)).expect("serializes");
        assert_eq!(
            empty,
            serde_json::json!({"version": null, "node_id": "edge-1", "connected": false, "control_plane": null, "from_cache": false, "routes": [], "clusters": []})
        );
        state.set_control_plane(Some("http://127.0.0.1:18000"));
        let mut low = route("web", 1);
        low.middlewares = vec![Middleware {
            name: "strip@consulcatalog".into(),
            kind: Some(middleware::Kind::StripPrefix(StripPrefix {
                prefixes: vec!["/api".into()],
                force_slash: false,
            })),
        }];
        low.requires = berth_model::required_features(&low)
            .into_iter()
            .map(String::from)
            .collect();
        let mut cluster = PCluster {
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
                    weight: 2,
                    id: "b".into(),
                },
            ],
            sticky: Some(StickyCookie {
                name: "lb".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        cluster.requires = berth_model::cluster_required_features(&cluster)
            .into_iter()
            .map(String::from)
            .collect();
        let reply = state.apply(&RouteUpdate {
            version: "abc".into(),
            nonce: "1".into(),
            body: Some(route_update::Body::Snapshot(Snapshot {
                routes: vec![low, route("web-high", 5)],
                clusters: vec![cluster],
            })),
        });
        assert!(
            matches!(reply.kind, Some(berth_proto::v1::proxy_message::Kind::Ack(_))),
            "{reply:?}"
        );
        let full = serde_json::to_value(view(&state)).expect("serializes");
        assert_eq!(
            full,
            serde_json::json!({
                "version": "abc", "node_id": "edge-1", "connected": true, "control_plane": "http://127.0.0.1:18000", "from_cache": false,
                "routes": [
                    {"name": "web-high", "service": "web-svc", "origin": "traefik/v3 router web@consulcatalog",
                     "rule": "Host(`web.example`)", "hosts": ["web.example"], "priority": 5, "order": 0, "entrypoints": [], "middlewares": [],
                     "cluster": "web", "endpoints": ["127.0.0.1:9090", "[::1]:9091"]},
                    {"name": "web", "service": "web-svc", "origin": "traefik/v3 router web@consulcatalog",
                     "rule": "Host(`web.example`)", "hosts": ["web.example"], "priority": 1, "order": 0, "entrypoints": [],
                     "middlewares": [{"name": "strip@consulcatalog", "kind": "strip_prefix"}],
                     "cluster": "web", "endpoints": ["127.0.0.1:9090", "[::1]:9091"]}
                ],
                "clusters": [{"name": "web", "scheme": "http", "host_header": "pass", "sticky_cookie": "lb",
                              "endpoints": [{"address": "127.0.0.1:9090", "weight": 1, "id": "a"},
                                            {"address": "[::1]:9091", "weight": 2, "id": "b"}]}]
            })
        );
    }
}
