//! berth-proxy's own lifecycle: a restart served from the snapshot cache (`--cache-dir`) while the
//! control plane is down, a corrupt cache file reported and ignored, and the drain on SIGTERM.

use std::time::{Duration, Instant};

use berth_tests::article::{Article, GO_HOST};
use berth_tests::{
    free_port, http, wait_until, Backend, Consul, Context, ControlPlane, Proxy, Result, TempDir,
};

const SLOW_HOST: &str = "slow.example";

/// `/healthz`: status and body.
async fn health(proxy: &Proxy) -> Result<(u16, String)> {
    let answer = http::get_with_host(&format!("http://{}/healthz", proxy.admin_addr), "admin").await?;
    Ok((answer.status, answer.body))
}

/// Waits until the admin address answers, and returns that first `/healthz` answer.
async fn first_health(proxy: &Proxy) -> Result<(u16, String)> {
    wait_until(
        &format!("{}'s admin address to answer", proxy.node_id),
        Duration::from_secs(10),
        || async { Ok(health(proxy).await.ok()) },
    )
    .await
    .with_context(|| proxy.proc.logs())
}

async fn wait_status(proxy: &Proxy, host: &str, status: u16) -> Result<()> {
    wait_until(
        &format!("{} to answer {status} for {host}", proxy.node_id),
        Duration::from_secs(20),
        || async { Ok((proxy.get(host, "/").await?.status == status).then_some(())) },
    )
    .await
    .with_context(|| proxy.proc.logs())
}

/// Waits until the proxy logged that it wrote `version` to its cache.
async fn wait_cached(proxy: &Proxy, version: &str) -> Result<()> {
    wait_until(
        &format!("{} to cache version {version}", proxy.node_id),
        Duration::from_secs(10),
        || async {
            let logs = proxy.proc.logs();
            Ok(logs
                .lines()
                .any(|l| l.contains("snapshot cached") && l.contains(version))
                .then_some(()))
        },
    )
    .await
    .with_context(|| proxy.proc.logs())
}

#[tokio::test]
async fn a_restarted_proxy_serves_its_cached_snapshot_with_the_control_plane_down() -> Result<()> {
    let consul = Consul::start().await?;
    let _article = Article::start(&consul).await?;
    let grpc_port = free_port();
    let mut cp = ControlPlane::start_on(&consul, grpc_port, &[])?;
    let cache = TempDir::new("proxy-cache");
    let cache_dir = cache
        .path()
        .to_str()
        .context("scratch path is UTF-8")?
        .to_string();
    let mut first = Proxy::start_with("cached-1", &cp.url(), &["--cache-dir", &cache_dir])?;
    wait_status(&first, GO_HOST, 200).await?;
    let version = first.version().await?.context("the proxy routes by a version")?;
    wait_cached(&first, &version).await?;
    assert!(cache.path().join("snapshot.bin").is_file());

    // Everything goes away: the proxy, then the control plane.
    first.proc.kill();
    cp.proc.kill();

    // Restarted with the same cache and no control plane: routing at once, from the cache.
    let second = Proxy::start_with("cached-2", &cp.url(), &["--cache-dir", &cache_dir])?;
    let (status, body) = first_health(&second).await?;
    assert_eq!(status, 200, "{body}\n{}", second.proc.logs());
    assert_eq!(
        body,
        format!("serving the cached snapshot {version} from {cache_dir}; no control plane yet")
    );
    let answer = second.get(GO_HOST, "/").await?;
    assert_eq!(answer.status, 200, "{}\n{}", answer.body, second.proc.logs());
    assert_eq!(second.version().await?.as_deref(), Some(version.as_str()));
    assert_eq!(second.snapshot().await?["from_cache"], true);

    // The control plane comes back with the same catalog: it confirms the cached version
    // (up_to_date) and the proxy serves it as the control plane's own from then on.
    let _cp2 = ControlPlane::start_on(&consul, grpc_port, &[])?;
    wait_until(
        "the proxy to leave the cache",
        Duration::from_secs(20),
        || async { Ok((health(&second).await? == (200, "ok".to_string())).then_some(())) },
    )
    .await
    .with_context(|| second.proc.logs())?;
    let logs = second.proc.logs();
    assert!(logs.contains("no longer serving from the cache"), "{logs}");
    assert_eq!(
        logs.matches("applied snapshot").count(),
        1,
        "the control plane answered up_to_date, nothing was applied again\n{logs}"
    );
    assert_eq!(second.snapshot().await?["from_cache"], false);
    assert_eq!(second.get(GO_HOST, "/").await?.status, 200);
    Ok(())
}

#[tokio::test]
async fn a_corrupt_cache_file_is_reported_and_ignored() -> Result<()> {
    let consul = Consul::start().await?;
    let _article = Article::start(&consul).await?;
    let cache = TempDir::new("proxy-cache-corrupt");
    let file = cache.path().join("snapshot.bin");
    std::fs::write(&file, b"this is not a snapshot")?;
    let cache_dir = cache
        .path()
        .to_str()
        .context("scratch path is UTF-8")?
        .to_string();

    // No control plane yet: the corrupt file is not served.
    let grpc_port = free_port();
    let proxy = Proxy::start_with(
        "corrupt",
        &format!("http://127.0.0.1:{grpc_port}"),
        &["--cache-dir", &cache_dir],
    )?;
    let (status, body) = first_health(&proxy).await?;
    assert_eq!((status, body.as_str()), (503, "no snapshot applied yet"));
    let logs = proxy.proc.logs();
    let report = logs
        .lines()
        .find(|l| l.contains("ignoring the snapshot cache file"))
        .with_context(|| format!("no report of the corrupt file\n{logs}"))?;
    assert!(report.contains(&file.display().to_string()), "{report}");
    assert!(report.contains("not a berth-proxy snapshot cache"), "{report}");
    assert_eq!(proxy.get(GO_HOST, "/").await?.status, 503);

    // A control plane answers: its snapshot is served and replaces the corrupt file.
    let _cp = ControlPlane::start_on(&consul, grpc_port, &[])?;
    wait_status(&proxy, GO_HOST, 200).await?;
    assert_eq!(health(&proxy).await?, (200, "ok".to_string()));
    let version = proxy.version().await?.context("a version")?;
    wait_cached(&proxy, &version).await?;
    let bytes = std::fs::read(&file)?;
    assert!(bytes.starts_with(b"berth-snapshot1\n"), "the file was replaced");
    Ok(())
}

#[tokio::test]
async fn sigterm_drains_requests_in_flight_and_exits_zero() -> Result<()> {
    let consul = Consul::start().await?;
    let backend = Backend::start("web_slow", "slow-1").await?;
    consul
        .register_instance(
            "web_slow",
            "slow-1",
            backend.port,
            &["traefik.enable=true", "traefik.frontend.rule=Host:slow.example"],
            false,
        )
        .await?;
    let cp = ControlPlane::start(&consul, &[])?;
    let mut proxy = Proxy::start_with(
        "draining",
        &cp.url(),
        &["--drain-grace", "3s", "--drain-timeout", "20s"],
    )?;
    wait_status(&proxy, SLOW_HOST, 200).await?;
    assert_eq!(health(&proxy).await?, (200, "ok".to_string()));

    // A request that takes 8s is in flight at the backend.
    let http_addr = proxy.http_addr.clone();
    let in_flight = tokio::spawn(async move {
        http::get_with_host(&format!("http://{http_addr}/slow?ms=8000"), SLOW_HOST).await
    });
    let waiting = format!("http://127.0.0.1:{}/slow/in-flight", backend.port);
    wait_until(
        "the slow request to reach the backend",
        Duration::from_secs(10),
        || async {
            let answer = http::get_with_host(&waiting, "backend").await?;
            Ok((answer.body.trim() == "1").then_some(()))
        },
    )
    .await?;

    let pid = proxy.proc.pid().context("the proxy runs")?;
    let sent = Instant::now();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    assert!(kill.success(), "kill -TERM {pid}");

    // Grace: /healthz says 503 at once, while new requests are still served.
    wait_until("/healthz to answer 503", Duration::from_secs(5), || async {
        Ok((health(&proxy).await?.0 == 503).then_some(()))
    })
    .await
    .with_context(|| proxy.proc.logs())?;
    let (_, body) = health(&proxy).await?;
    assert!(body.starts_with("draining"), "{body}");
    let during_grace = proxy.get(SLOW_HOST, "/").await?;
    assert!(
        sent.elapsed() < Duration::from_secs(3),
        "the grace period was over before the check; the machine is too slow for this test"
    );
    assert_eq!(during_grace.status, 200, "served during the grace period");

    // Drain: the entrypoint stops accepting, the admin address still answers, the request in
    // flight is still going.
    wait_until(
        "the entrypoint to stop accepting",
        Duration::from_secs(5),
        || async {
            Ok(tokio::net::TcpStream::connect(&proxy.http_addr)
                .await
                .is_err()
                .then_some(()))
        },
    )
    .await
    .with_context(|| proxy.proc.logs())?;
    assert!(
        sent.elapsed() >= Duration::from_millis(2900),
        "not before the grace period"
    );
    assert_eq!(
        health(&proxy).await?.0,
        503,
        "the admin address stays up while draining"
    );
    assert!(!in_flight.is_finished(), "the slow request is still in flight");

    // The request in flight completes, then the process exits 0.
    let answer = in_flight.await??;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let exited = proxy.proc.wait_exit(Duration::from_secs(15));
    let logs = proxy.proc.logs();
    let status = exited.with_context(|| format!("the proxy did not exit\n{logs}"))?;
    assert_eq!(status.code(), Some(0), "{logs}");

    let steps = [
        "shutting down: /healthz answers 503",
        "draining: no new connections",
        "drained: all connections closed",
        "closing the admin address",
    ];
    let mut from = 0;
    for step in steps {
        let at = logs[from..]
            .find(step)
            .with_context(|| format!("step {step:?} not logged in order\n{logs}"))?;
        from += at;
    }
    Ok(())
}

/// One HTTP/2 frame as read off the wire.
#[derive(Debug)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

const FRAME_HEADERS: u8 = 0x1;
const FRAME_SETTINGS: u8 = 0x4;
const FRAME_PING: u8 = 0x6;
const FRAME_GOAWAY: u8 = 0x7;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_ACK: u8 = 0x1;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap_or(0).to_be_bytes();
    let mut bytes = vec![len[1], len[2], len[3], kind, flags];
    bytes.extend_from_slice(&stream.to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// An HPACK literal (not indexed) whose name is entry `index` of the static table.
fn hpack_literal(index: u8, value: &str) -> Vec<u8> {
    let mut bytes = vec![index, u8::try_from(value.len()).unwrap_or(0)];
    bytes.extend_from_slice(value.as_bytes());
    bytes
}

#[tokio::test]
async fn sigterm_sends_goaway_to_http2_clients_and_finishes_their_requests() -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let consul = Consul::start().await?;
    let backend = Backend::start("web_slow", "slow-h2").await?;
    consul
        .register_instance(
            "web_slow",
            "slow-h2",
            backend.port,
            &["traefik.enable=true", "traefik.frontend.rule=Host:slow.example"],
            false,
        )
        .await?;
    let cp = ControlPlane::start(&consul, &[])?;
    let mut proxy = Proxy::start_with("draining-h2", &cp.url(), &["--drain-grace", "0"])?;
    wait_status(&proxy, SLOW_HOST, 200).await?;

    // h2c with prior knowledge: preface, SETTINGS, and GET /slow?ms=3000 on stream 1.
    let stream = tokio::net::TcpStream::connect(&proxy.http_addr).await?;
    let (mut reader, mut writer) = stream.into_split();
    let mut block = vec![0x82, 0x86]; // :method GET, :scheme http
    block.extend(hpack_literal(0x04, "/slow?ms=3000")); // :path
    block.extend(hpack_literal(0x01, SLOW_HOST)); // :authority
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(frame(FRAME_SETTINGS, 0, 0, &[]));
    hello.extend(frame(FRAME_HEADERS, 0x4 | FLAG_END_STREAM, 1, &block));
    writer.write_all(&hello).await?;

    // Read every frame until the proxy closes the connection, acknowledging its SETTINGS and
    // PINGs as a client must (a graceful shutdown waits for the PING it sends with GOAWAY).
    let frames = tokio::spawn(async move {
        let mut frames = Vec::new();
        loop {
            let mut head = [0u8; 9];
            if reader.read_exact(&mut head).await.is_err() {
                return frames;
            }
            let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
            let mut payload = vec![0u8; len];
            if reader.read_exact(&mut payload).await.is_err() {
                return frames;
            }
            let got = Frame {
                kind: head[3],
                flags: head[4],
                stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
                payload,
            };
            if got.kind == FRAME_SETTINGS && got.flags & FLAG_ACK == 0 {
                let _ = writer.write_all(&frame(FRAME_SETTINGS, FLAG_ACK, 0, &[])).await;
            }
            if got.kind == FRAME_PING && got.flags & FLAG_ACK == 0 {
                let _ = writer
                    .write_all(&frame(FRAME_PING, FLAG_ACK, 0, &got.payload))
                    .await;
            }
            frames.push(got);
        }
    });

    let waiting = format!("http://127.0.0.1:{}/slow/in-flight", backend.port);
    wait_until(
        "the HTTP/2 request to reach the backend",
        Duration::from_secs(10),
        || async {
            let answer = http::get_with_host(&waiting, "backend").await?;
            Ok((answer.body.trim() == "1").then_some(()))
        },
    )
    .await
    .with_context(|| proxy.proc.logs())?;
    let pid = proxy.proc.pid().context("the proxy runs")?;
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    assert!(kill.success(), "kill -TERM {pid}");

    let frames = tokio::time::timeout(Duration::from_secs(15), frames)
        .await
        .with_context(|| {
            format!(
                "the proxy never closed the HTTP/2 connection\n{}",
                proxy.proc.logs()
            )
        })??;
    let goaway = frames
        .iter()
        .position(|f| f.kind == FRAME_GOAWAY)
        .with_context(|| format!("no GOAWAY in {frames:?}"))?;
    let error_code = frames[goaway]
        .payload
        .get(4..8)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    assert_eq!(error_code, Some(0), "a graceful GOAWAY (NO_ERROR): {frames:?}");
    let response = frames
        .iter()
        .position(|f| f.kind == FRAME_HEADERS && f.stream == 1)
        .with_context(|| format!("no response to stream 1 in {frames:?}"))?;
    assert!(
        goaway < response,
        "GOAWAY comes while the request is in flight: {frames:?}"
    );
    assert_eq!(
        frames[response].payload.first(),
        Some(&0x88),
        "the response is :status 200 (HPACK static entry 8): {frames:?}"
    );
    assert!(
        frames[response..]
            .iter()
            .any(|f| f.stream == 1 && f.flags & FLAG_END_STREAM != 0),
        "the response is complete: {frames:?}"
    );

    let exited = proxy.proc.wait_exit(Duration::from_secs(15));
    let logs = proxy.proc.logs();
    let status = exited.with_context(|| format!("the proxy did not exit\n{logs}"))?;
    assert_eq!(status.code(), Some(0), "{logs}");
    Ok(())
}
