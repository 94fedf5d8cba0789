//! The route discovery protocol as a proxy sees it, against the real berth-control: a test client
//! speaks the stream by hand so every message of routes.proto's story can be checked.

use std::time::Duration;

use berth_proto::v1::proxy_message::Kind;
use berth_proto::v1::route_discovery_client::RouteDiscoveryClient;
use berth_proto::v1::route_update::Body;
use berth_proto::v1::{Ack, Hello, Nack, ProxyMessage, RouteUpdate};
use berth_tests::article::{Article, GO_TAGS};
use berth_tests::{wait_until, Backend, Consul, ControlPlane, Result};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// One hand-driven stream.
struct Stream {
    tx: mpsc::Sender<ProxyMessage>,
    updates: tonic::Streaming<RouteUpdate>,
}

impl Stream {
    async fn open(cp: &ControlPlane, first: ProxyMessage) -> std::result::Result<Stream, tonic::Status> {
        let mut client = RouteDiscoveryClient::connect(cp.url())
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let (tx, rx) = mpsc::channel(8);
        tx.send(first)
            .await
            .map_err(|_| tonic::Status::internal("send"))?;
        // A refused stream may report its status here or on the first read.
        let updates = client.stream(ReceiverStream::new(rx)).await?.into_inner();
        Ok(Stream { tx, updates })
    }

    async fn next(&mut self) -> Result<RouteUpdate> {
        let next = tokio::time::timeout(Duration::from_secs(15), self.updates.message()).await??;
        next.ok_or_else(|| anyhow::anyhow!("stream ended"))
    }

    async fn send(&self, kind: Kind) -> Result<()> {
        self.tx
            .send(ProxyMessage { kind: Some(kind) })
            .await
            .map_err(|_| anyhow::anyhow!("stream gone"))
    }
}

fn hello(node: &str, version: &str) -> ProxyMessage {
    ProxyMessage {
        kind: Some(Kind::Hello(Hello {
            node_id: node.into(),
            entrypoints: vec!["http".into()],
            version: version.into(),
            build: "protocol-test".into(),
        })),
    }
}

#[tokio::test]
async fn hello_snapshot_ack_nack_and_up_to_date() -> Result<()> {
    let consul = Consul::start().await?;
    let _article = Article::start(&consul).await?;
    let cp = ControlPlane::start(&consul, &[])?;
    cp.wait_snapshot("the article's two routes", |s| {
        s["routes"].as_array().map_or(0, Vec::len) == 2
    })
    .await?;

    // Hello with no version: a full snapshot.
    let mut stream = Stream::open(&cp, hello("hand-1", "")).await?;
    let first = stream.next().await?;
    let Some(Body::Snapshot(snapshot)) = &first.body else {
        panic!("expected a snapshot, got {first:?}")
    };
    assert_eq!(snapshot.routes.len(), 2);
    assert_eq!(
        first.version,
        cp.snapshot().await?["version"].as_str().unwrap_or_default()
    );
    stream
        .send(Kind::Ack(Ack {
            version: first.version.clone(),
            nonce: first.nonce.clone(),
        }))
        .await?;
    wait_until(
        "the ACK to show in /api/proxies",
        Duration::from_secs(10),
        || async {
            let list = cp.proxies().await?;
            Ok(
                (list[0]["node_id"] == "hand-1" && list[0]["acked_version"] == first.version.as_str())
                    .then_some(()),
            )
        },
    )
    .await?;

    // A catalog change is pushed with a new version and a new nonce, as a delta from the version
    // ACKed: the one changed cluster, no route. NACK it.
    let extra = Backend::start("web_extra", "extra-1").await?;
    consul
        .register_instance("web_go", "go-4", extra.port, &GO_TAGS, false)
        .await?;
    let second = stream.next().await?;
    assert_ne!(second.version, first.version);
    assert_ne!(second.nonce, first.nonce);
    let Some(Body::Delta(delta)) = &second.body else {
        panic!("expected a delta, got {second:?}")
    };
    assert_eq!(delta.base_version, first.version);
    assert_eq!((delta.routes.len(), delta.clusters.len()), (0, 1), "{delta:?}");
    assert!(delta.removed_routes.is_empty() && delta.removed_clusters.is_empty());
    stream
        .send(Kind::Nack(Nack {
            version: second.version.clone(),
            nonce: second.nonce.clone(),
            error: "test says no".into(),
        }))
        .await?;
    let list = wait_until(
        "the NACK to show in /api/proxies",
        Duration::from_secs(10),
        || async {
            let list = cp.proxies().await?;
            Ok((list[0]["last_nack"]["error"] == "test says no").then_some(list))
        },
    )
    .await?;
    assert_eq!(list[0]["last_nack"]["nonce"], second.nonce.as_str());
    assert_eq!(
        list[0]["acked_version"],
        first.version.as_str(),
        "a NACK leaves the ACKed version as it was"
    );

    // A NACKed delta is answered at once with the full snapshot of that version (the proxy may
    // hold another base than the control plane thought). ACK it.
    let full = stream.next().await?;
    assert_eq!(full.version, second.version);
    assert!(matches!(full.body, Some(Body::Snapshot(_))), "{full:?}");
    stream
        .send(Kind::Ack(Ack {
            version: full.version.clone(),
            nonce: full.nonce.clone(),
        }))
        .await?;

    // The next change is a delta again, from the version ACKed.
    consul.deregister("go-4").await?;
    let third = stream.next().await?;
    assert_eq!(
        third.version, first.version,
        "the same catalog gives the same version"
    );
    let Some(Body::Delta(delta)) = &third.body else {
        panic!("expected a delta, got {third:?}")
    };
    assert_eq!(delta.base_version, second.version);

    // A proxy that already holds the current version gets `up_to_date`, not the routes again.
    let mut again = Stream::open(&cp, hello("hand-2", &third.version)).await?;
    let answer = again.next().await?;
    assert_eq!(answer.version, third.version);
    assert!(matches!(answer.body, Some(Body::UpToDate(_))), "{answer:?}");

    // A proxy holding a recent version (here the one before) gets a delta from it; one holding
    // a version the control plane never had gets the full snapshot.
    let mut behind = Stream::open(&cp, hello("hand-3", &second.version)).await?;
    let answer = behind.next().await?;
    let Some(Body::Delta(delta)) = &answer.body else {
        panic!("expected a delta, got {answer:?}")
    };
    assert_eq!(
        (answer.version.as_str(), delta.base_version.as_str()),
        (third.version.as_str(), second.version.as_str())
    );
    let mut stranger = Stream::open(&cp, hello("hand-4", "0123456789abcdef")).await?;
    let answer = stranger.next().await?;
    assert!(matches!(answer.body, Some(Body::Snapshot(_))), "{answer:?}");
    Ok(())
}

#[tokio::test]
async fn a_stream_must_open_with_a_hello() -> Result<()> {
    let consul = Consul::start().await?;
    let cp = ControlPlane::start(&consul, &[])?;
    cp.wait_ready().await?;
    let ack = ProxyMessage {
        kind: Some(Kind::Ack(Ack {
            version: "x".into(),
            nonce: "1".into(),
        })),
    };
    let status = match Stream::open(&cp, ack).await {
        Err(status) => status,
        Ok(mut stream) => match stream.updates.message().await {
            Err(status) => status,
            Ok(other) => panic!("expected the stream to be refused, got {other:?}"),
        },
    };
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("Hello"), "{status:?}");

    let empty_node = Stream::open(&cp, hello("", "")).await;
    let status = match empty_node {
        Err(status) => status,
        Ok(mut stream) => stream.updates.message().await.expect_err("refused"),
    };
    assert!(status.message().contains("node_id"), "{status:?}");
    Ok(())
}
