//! The standard gRPC services served beside route discovery, so stock tooling works unchanged:
//!
//! - `grpc.health.v1.Health` (what `grpc_health_probe` and load balancers ask): both the server
//!   as a whole (service `""`) and `berth.routes.v1.RouteDiscovery` are `NOT_SERVING` until the
//!   first snapshot is published, `SERVING` from then on, and `NOT_SERVING` again once the
//!   control plane starts shutting down.
//! - `grpc.reflection.v1` and `v1alpha` server reflection (what `grpcurl` lists and describes
//!   with), over the descriptors of `routes.proto`, the health service and reflection itself.
//!
//! Neither changes what is routed; health only reflects the store and the stop signal.

use anyhow::{Context, Result};
use tokio::sync::watch;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;
use tonic_reflection::server::{v1, v1alpha};
use tracing::info;

use crate::store::Store;

/// The route discovery server, whose gRPC service name health is reported under.
type Discovery = crate::wire::DiscoveryServer;

/// The health service, `NOT_SERVING` already when this returns, and kept in step with the store
/// and the stop signal from then on (by a task that ends once the control plane stops).
pub(crate) async fn health(store: Store, stop: watch::Receiver<bool>) -> HealthServer<impl Health> {
    let (reporter, service) = tonic_health::server::health_reporter();
    set(&reporter, ServingStatus::NotServing).await;
    tokio::spawn(follow(reporter, store, stop));
    service
}

/// `SERVING` once the first snapshot is published, `NOT_SERVING` once the control plane stops.
/// Then the statuses are dropped, which ends every `Watch` stream after it has seen
/// `NOT_SERVING`: the gRPC server's graceful shutdown does not wait for watchers.
async fn follow(mut reporter: HealthReporter, store: Store, mut stop: watch::Receiver<bool>) {
    let mut published = store.subscribe();
    let mut stopping = stop.clone();
    // The guards `wait_for` returns are dropped at once: they must not be held across an await.
    let first = tokio::select! {
        first = async { published.wait_for(Option::is_some).await.is_ok() } => first,
        () = async { let _ = stopping.wait_for(|stopping| *stopping).await; } => false,
    };
    if first {
        set(&reporter, ServingStatus::Serving).await;
        info!("gRPC health: SERVING (the first snapshot is published)");
    }
    let _ = stop.wait_for(|stopping| *stopping).await;
    set(&reporter, ServingStatus::NotServing).await;
    reporter.clear_service_status("").await;
    reporter.clear_service_status(DISCOVERY).await;
    info!("gRPC health: NOT_SERVING (stopping)");
}

/// The route discovery service's name, as health checks ask for it.
const DISCOVERY: &str = <Discovery as tonic::server::NamedService>::NAME;

async fn set(reporter: &HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    match status {
        ServingStatus::Serving => reporter.set_serving::<Discovery>().await,
        _ => reporter.set_not_serving::<Discovery>().await,
    }
}

/// The reflection services (v1, and v1alpha for older clients).
pub(crate) fn reflection() -> Result<(
    v1::ServerReflectionServer<impl v1::ServerReflection>,
    v1alpha::ServerReflectionServer<impl v1alpha::ServerReflection>,
)> {
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(berth_proto::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let v1 = builder()
        .build_v1()
        .context("the gRPC reflection service (v1) over routes.proto's descriptors")?;
    let v1alpha = builder()
        .build_v1alpha()
        .context("the gRPC reflection service (v1alpha) over routes.proto's descriptors")?;
    Ok((v1, v1alpha))
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    use tokio_stream::StreamExt;
    use tonic::Request;
    use tonic_health::pb::health_check_response::ServingStatus as Wire;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::server::HealthService;

    use crate::compile::Compiled;

    #[test]
    fn the_descriptors_build_both_reflection_services() {
        assert!(reflection().is_ok());
    }

    /// Waits (up to 5s) until every service name in `names` reports `want`.
    async fn wait_for(reporter: &HealthReporter, names: &[&str], want: Wire) {
        let service = HealthService::from_health_reporter(reporter.clone());
        for _ in 0..500 {
            let mut all = true;
            for name in names {
                let answer = service
                    .check(Request::new(HealthCheckRequest {
                        service: (*name).to_string(),
                    }))
                    .await
                    .map(|r| r.into_inner().status)
                    .ok();
                all &= answer == Some(want as i32);
            }
            if all {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{names:?} never reported {want:?}");
    }

    #[tokio::test]
    async fn not_serving_until_the_first_snapshot_and_again_when_stopping() {
        let names = ["", "berth.routes.v1.RouteDiscovery"];
        let store = Store::new();
        let (stop_tx, stop) = watch::channel(false);
        let reporter = HealthReporter::new();
        set(&reporter, ServingStatus::NotServing).await;
        wait_for(&reporter, &names, Wire::NotServing).await;
        tokio::spawn(follow(reporter.clone(), store.clone(), stop));
        tokio::time::sleep(Duration::from_millis(50)).await;
        wait_for(&reporter, &names, Wire::NotServing).await;

        store.publish(Compiled {
            snapshot: Default::default(),
            version: "v1".into(),
            errors: Vec::new(),
            changed: None,
        });
        wait_for(&reporter, &names, Wire::Serving).await;

        // Watchers see NOT_SERVING when the control plane stops, and then their stream ends.
        let service = HealthService::from_health_reporter(reporter.clone());
        let mut watchers = Vec::new();
        for name in names {
            let watcher = service
                .watch(Request::new(HealthCheckRequest {
                    service: name.to_string(),
                }))
                .await;
            watchers.push(watcher.map(tonic::Response::into_inner));
        }
        let _ = stop_tx.send(true);
        for watcher in watchers {
            let Ok(mut watcher) = watcher else {
                panic!("watch refused")
            };
            let mut seen = Vec::new();
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while let Some(answer) = watcher.next().await {
                    seen.push(answer.map(|a| a.status).ok());
                }
            })
            .await;
            assert!(read.is_ok(), "the Watch stream did not end: {seen:?}");
            assert_eq!(seen.last(), Some(&Some(Wire::NotServing as i32)), "{seen:?}");
        }
    }
}
