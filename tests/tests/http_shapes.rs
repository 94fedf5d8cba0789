//! gRPC end to end: a gRPC backend registered in the real Consul with Traefik's h2c tags (v3's
//! `loadbalancer.server.scheme=h2c`, v1's `traefik.protocol=h2c`), compiled by berth-control and
//! reached through berth-proxy over HTTP/2. The data plane's other HTTP shapes (WebSocket,
//! trailers, 100-continue, streaming) are tested in data-plane/tests/http_shapes.rs.

use std::time::Duration;

use berth_tests::{wait_until, Consul, ControlPlane, Proxy, Result};
use tonic_health::pb::health_check_response::ServingStatus as Answer;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::ServingStatus;

/// A Health Check for `service` through the proxy, with `host` as the `:authority`.
async fn check(proxy: &Proxy, host: &str, service: &str) -> std::result::Result<i32, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", proxy.http_addr))
        .map_err(|e| tonic::Status::internal(e.to_string()))?
        .origin(
            format!("http://{host}")
                .parse()
                .map_err(|_| tonic::Status::internal("origin"))?,
        )
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await?;
    Ok(answer.into_inner().status)
}

#[tokio::test]
async fn grpc_services_tagged_h2c_work_through_the_proxy() -> Result<()> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("berth.Echo", ServingStatus::Serving)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let consul = Consul::start().await?;
    consul
        .register_instance(
            "grpc-v3",
            "grpc-v3-1",
            port,
            &[
                "traefik.enable=true",
                "traefik.http.routers.grpc-v3.rule=Host(`grpc3.test`)",
                "traefik.http.services.grpc-v3.loadbalancer.server.scheme=h2c",
            ],
            false,
        )
        .await?;
    consul
        .register_instance(
            "grpc-v1",
            "grpc-v1-1",
            port,
            &[
                "traefik.enable=true",
                "traefik.frontend.rule=Host:grpc1.test",
                "traefik.protocol=h2c",
            ],
            false,
        )
        .await?;
    let cp = ControlPlane::start(&consul, &[])?;
    cp.wait_ready().await?;
    let proxy = Proxy::start("proxy-grpc", &cp.url())?;
    let snapshot = cp
        .wait_snapshot("both gRPC services", |s| {
            let services: Vec<&str> = s["routes"]
                .as_array()
                .map(|r| r.iter().filter_map(|r| r["service"].as_str()).collect())
                .unwrap_or_default();
            services.contains(&"grpc-v3") && services.contains(&"grpc-v1")
        })
        .await?;
    proxy
        .wait_version(snapshot["version"].as_str().unwrap_or_default())
        .await?;

    for host in ["grpc3.test", "grpc1.test"] {
        let status = wait_until(
            &format!("a gRPC answer through the proxy for {host}"),
            Duration::from_secs(15),
            || async { Ok(check(&proxy, host, "berth.Echo").await.ok()) },
        )
        .await
        .map_err(|e| e.context(proxy.proc.logs()))?;
        assert_eq!(status, Answer::Serving as i32, "{host}");
        let missing = check(&proxy, host, "berth.Missing")
            .await
            .expect_err("an unknown service");
        assert_eq!(missing.code(), tonic::Code::NotFound, "{host}: {missing:?}");
    }
    server.abort();
    Ok(())
}
