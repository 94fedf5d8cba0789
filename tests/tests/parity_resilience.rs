//! Circuit breakers end to end, Berth beside the real Traefik: a `circuitbreaker` middleware over
//! a backend that fails (answering 500, or refusing connections) trips on both proxies after the
//! same request, answers the fallback without reaching the backend, trips again when the backend
//! still fails once let through, and lets traffic back after fallback and recovery once the
//! backend is healthy. Traefik v1's `backend.circuitbreaker.expression` runs on Berth alone
//! (Traefik 3 does not read v1 tags).
//!
//! Each side is driven through the same scenario in turn (the backend is shared), and what the
//! client and the backend saw is compared. Waits are on conditions, never on sleeps.

use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use berth_tests::consul::Registration;
use berth_tests::parity::Berth;
use berth_tests::traefik::{Traefik, TraefikOptions};
use berth_tests::{free_port, wait_until, Consul};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A backend whose status the test switches, counting the requests it got.
struct Switchable {
    port: u16,
    status: Arc<AtomicU16>,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Switchable {
    async fn start(status: u16) -> Result<Switchable> {
        Self::start_slow(status, 0).await
    }

    /// A backend that answers each request after `delay_ms`.
    async fn start_slow(status: u16, delay_ms: u64) -> Result<Switchable> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let status = Arc::new(AtomicU16::new(status));
        let hits = Arc::new(AtomicUsize::new(0));
        let (s, h) = (status.clone(), hits.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (s, h) = (s.clone(), h.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    h.fetch_add(1, Ordering::SeqCst);
                    if delay_ms > 0 {
                        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                    }
                    let code = s.load(Ordering::SeqCst);
                    let answer =
                        format!("HTTP/1.1 {code} X\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbe\n");
                    let _ = conn.write_all(answer.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        Ok(Switchable {
            port,
            status,
            hits,
            task,
        })
    }

    fn set(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Switchable {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a client got.
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    status: u16,
    body: String,
    content_type: Option<String>,
}

async fn send(http: &reqwest::Client, addr: &str, host: &str) -> Result<Answer> {
    let response = http
        .get(format!("http://{addr}/"))
        .header("host", host)
        .send()
        .await
        .with_context(|| format!("GET http://{host}/ via {addr}"))?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response.text().await?;
    Ok(Answer {
        status,
        body,
        content_type,
    })
}

fn client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0)
        .build()?)
}

/// What one side did through the scenario over a backend answering 500.
#[derive(Debug, PartialEq)]
struct CodesRun {
    first: Answer,
    /// The request right after the first: the fallback.
    fallback: Answer,
    /// Backend requests while tripped (five requests sent).
    hits_while_tripped: usize,
    /// Backend requests let through after the fallback before it tripped again.
    hits_before_tripping_again: usize,
    /// After the backend recovered: a request reached it, then ten in a row did.
    recovered: bool,
}

async fn codes_scenario(
    http: &reqwest::Client,
    addr: &str,
    host: &str,
    backend: &Switchable,
) -> Result<CodesRun> {
    backend.set(500);
    let first = send(http, addr, host).await?;
    let fallback = send(http, addr, host).await?;
    let before = backend.hits();
    for _ in 0..5 {
        let a = send(http, addr, host).await?;
        anyhow::ensure!(a.status == 503, "tripped, yet answered {a:?}");
    }
    let hits_while_tripped = backend.hits() - before;
    // After the fallback duration one request goes through, fails, and trips the breaker again.
    let before = backend.hits();
    wait_until(
        "a request let through while recovering",
        Duration::from_secs(10),
        || async {
            let a = send(http, addr, host).await?;
            Ok((a.status == 500).then_some(()))
        },
    )
    .await?;
    let mut tripped_again = true;
    for _ in 0..5 {
        tripped_again &= send(http, addr, host).await?.status == 503;
    }
    anyhow::ensure!(
        tripped_again,
        "the failure while recovering did not trip the breaker again"
    );
    let hits_before_tripping_again = backend.hits() - before;
    // A healthy backend: after fallback and recovery, all traffic passes again.
    backend.set(200);
    wait_until(
        "a request to reach the healthy backend",
        Duration::from_secs(10),
        || async { Ok((send(http, addr, host).await?.status == 200).then_some(())) },
    )
    .await?;
    wait_until(
        "ten requests in a row to pass",
        Duration::from_secs(10),
        || async {
            for _ in 0..10 {
                if send(http, addr, host).await?.status != 200 {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        },
    )
    .await?;
    Ok(CodesRun {
        first,
        fallback,
        hits_while_tripped,
        hits_before_tripping_again,
        recovered: true,
    })
}

const ON: &str = "traefik.enable=true";

#[tokio::test]
async fn parity_circuit_breaker_trips_falls_back_and_recovers() -> Result<()> {
    let consul = Consul::start().await?;
    let backend = Switchable::start(500).await?;
    let dead_port = free_port();
    let cb = "traefik.http.middlewares";
    let codes_tags = vec![
        ON.to_string(),
        "traefik.http.routers.cbcodes.rule=Host(`codes.cb.test`)".into(),
        "traefik.http.routers.cbcodes.middlewares=cbcodes".into(),
        format!("{cb}.cbcodes.circuitbreaker.expression=ResponseCodeRatio(500, 600, 0, 600) > 0.5"),
        format!("{cb}.cbcodes.circuitbreaker.fallbackDuration=1s"),
        format!("{cb}.cbcodes.circuitbreaker.recoveryDuration=1s"),
        format!("{cb}.cbcodes.circuitbreaker.checkPeriod=50ms"),
    ];
    let net_tags = vec![
        ON.to_string(),
        "traefik.http.routers.cbnet.rule=Host(`net.cb.test`)".into(),
        "traefik.http.routers.cbnet.middlewares=cbnet".into(),
        format!("{cb}.cbnet.circuitbreaker.expression=NetworkErrorRatio() > 0.5"),
        format!("{cb}.cbnet.circuitbreaker.responseCode=429"),
    ];
    let slow = Switchable::start_slow(200, 250).await?;
    let slow_tags = vec![
        ON.to_string(),
        "traefik.http.routers.cbslow.rule=Host(`slow.cb.test`)".into(),
        "traefik.http.routers.cbslow.middlewares=cbslow".into(),
        format!("{cb}.cbslow.circuitbreaker.expression=LatencyAtQuantileMS(50.0) > 100"),
    ];
    let v1_tags = vec![
        ON.to_string(),
        "traefik.frontend.rule=Host:v1.cb.test".into(),
        "traefik.backend.circuitbreaker.expression=NetworkErrorRatio() > 0.5".into(),
    ];
    let registration = |service: &str, port: u16, tags: Vec<String>| Registration {
        node: "parity".into(),
        id: format!("{service}-1"),
        service: service.into(),
        address: "127.0.0.1".into(),
        port,
        tags,
    };
    consul
        .api()
        .register_many(&[
            registration("cb-codes", backend.port, codes_tags),
            registration("cb-net", dead_port, net_tags),
            registration("cb-v1", free_port(), v1_tags),
            registration("cb-slow", slow.port, slow_tags),
        ])
        .await?;

    let options = TraefikOptions::default();
    let traefik = Traefik::start(&consul.http_addr, &options).await?;
    traefik
        .wait_routers(&["cbcodes".to_string(), "cbnet".to_string(), "cbslow".to_string()])
        .await?;
    let berth = Berth::start(&consul, &options.entrypoints)?;
    berth.wait_routing().await?;

    let http = client()?;
    let traefik_addr = &traefik.entrypoints["web"];
    let berth_addr = &berth.entrypoints["web"];

    // ResponseCodeRatio over a backend answering 500.
    let t = codes_scenario(&http, traefik_addr, "codes.cb.test", &backend).await?;
    let b = codes_scenario(&http, berth_addr, "codes.cb.test", &backend)
        .await
        .with_context(|| berth.proxy.proc.logs())?;
    assert_eq!(
        t.first.status, 500,
        "Traefik: the first failure reaches the client"
    );
    assert_eq!(t.fallback.status, 503, "Traefik trips after the first failure");
    assert_eq!(t.fallback.body, "Service Unavailable");
    assert_eq!(t.hits_while_tripped, 0);
    assert_eq!(t.hits_before_tripping_again, 1);
    assert_eq!(b, t, "Berth differs from Traefik");

    // NetworkErrorRatio over a backend refusing connections, with another response code.
    for (side, addr) in [("traefik", traefik_addr), ("berth", berth_addr)] {
        let first = send(&http, addr, "net.cb.test").await?;
        let second = send(&http, addr, "net.cb.test").await?;
        assert_eq!(first.status, 502, "{side}: the refused connection");
        assert_eq!(
            (
                second.status,
                second.body.as_str(),
                second.content_type.as_deref()
            ),
            (429, "Too Many Requests", None),
            "{side}: the fallback"
        );
    }

    // LatencyAtQuantileMS over a slow backend: the first slow answer trips the breaker.
    for (side, addr) in [("traefik", traefik_addr), ("berth", berth_addr)] {
        let before = slow.hits();
        let first = send(&http, addr, "slow.cb.test").await?;
        let second = send(&http, addr, "slow.cb.test").await?;
        assert_eq!(first.status, 200, "{side}: the slow answer");
        assert_eq!(
            (second.status, second.body.as_str()),
            (503, "Service Unavailable"),
            "{side}"
        );
        assert_eq!(
            slow.hits() - before,
            1,
            "{side}: the fallback does not reach the backend"
        );
    }

    // Traefik v1's backend.circuitbreaker.expression, on Berth alone.
    let first = send(&http, berth_addr, "v1.cb.test").await?;
    let second = send(&http, berth_addr, "v1.cb.test").await?;
    assert_eq!(first.status, 502);
    assert_eq!(
        (second.status, second.body.as_str()),
        (503, "Service Unavailable")
    );
    Ok(())
}
