//! TLS termination end to end: real Consul, berth-control, a berth-proxy with a plain entrypoint
//! `web` and a TLS entrypoint `websecure` (`--tls websecure --cert-dir DIR`), and a demo backend
//! registered with Traefik tags: a router on `web` with a `redirectscheme` middleware sends the
//! client to https, and the router on `websecure` serves the request over TLS, its backend told
//! `X-Forwarded-Proto: https`.
//!
//! Also Traefik's TLS routers (`tls=true`): served over HTTPS on the TLS entrypoint and not over
//! plain HTTP, the same containers' labels routed by the real Traefik alongside for comparison.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use berth_tests::traefik::{Traefik, TraefikOptions};
use berth_tests::{free_port, wait_until, Backend, Consul, ControlPlane, Proxy, Result, TempDir};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const HOST: &str = "app.tls.test";

/// Sends `GET path` with `Connection: close` and returns the response's head (status line and
/// headers, lower-cased).
async fn get_head<S: AsyncRead + AsyncWrite + Unpin>(stream: S, path: &str) -> Result<String> {
    head_for(stream, HOST, path).await
}

/// [`get_head`] for another host.
async fn head_for<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    host: &str,
    path: &str,
) -> Result<String> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .context("the response did not end")??;
    let text = String::from_utf8_lossy(&response).into_owned();
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    Ok(head.to_ascii_lowercase())
}

#[tokio::test]
async fn redirectscheme_to_the_tls_entrypoint() -> Result<()> {
    // A certificate for the host, in a certificate directory.
    let (generated, connector) = certificate(&[HOST])?;
    let certs = cert_dir("tls-redirect-certs", &generated)?;

    let consul = Consul::start().await?;
    let backend = Backend::start("tls-app", "tls-app-1").await?;
    consul
        .register_instance(
            "tls-app",
            "tls-app-1",
            backend.port,
            &[
                "traefik.enable=true",
                &format!("traefik.http.routers.app-web.rule=Host(`{HOST}`)"),
                "traefik.http.routers.app-web.entrypoints=web",
                "traefik.http.routers.app-web.middlewares=app-https",
                "traefik.http.middlewares.app-https.redirectscheme.scheme=https",
                &format!("traefik.http.routers.app.rule=Host(`{HOST}`)"),
                "traefik.http.routers.app.entrypoints=websecure",
            ],
            false,
        )
        .await?;
    let (_cp, proxy, web, websecure, _) = start_berth(&consul, "tls-app", 2, certs.path()).await?;

    // Plain http on web: redirected to https.
    let head = wait_until("web to answer", Duration::from_secs(10), || async {
        Ok(TcpStream::connect(&web).await.ok())
    })
    .await?;
    let head = get_head(head, "/page?x=1").await?;
    assert!(head.starts_with("http/1.1 302"), "{head}");
    assert!(
        head.contains("\r\nlocation: https://app.tls.test/page?x=1"),
        "{head}"
    );

    // https on websecure: served, with the certificate from the directory.
    let tcp = TcpStream::connect(&websecure).await?;
    let tls = connector
        .connect(ServerName::try_from(HOST)?, tcp)
        .await
        .with_context(|| format!("TLS handshake with {websecure}: {}", proxy.proc.logs()))?;
    let head = get_head(tls, "/page?x=1&echo=1").await?;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("\r\nx-demo-instance: tls-app-1"), "{head}");
    assert!(head.contains("\r\nx-seen-x-forwarded-proto: https"), "{head}");
    Ok(())
}

const SECURE: &str = "secure.tls.test";
const OPEN: &str = "open.tls.test";
const EVERYWHERE: &str = "everywhere.tls.test";

/// A self-signed certificate for `names`, and a client that trusts it.
fn certificate(names: &[&str]) -> Result<(rcgen::CertifiedKey, tokio_rustls::TlsConnector)> {
    let generated =
        rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(generated.cert.der().clone())?;
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok((generated, tokio_rustls::TlsConnector::from(Arc::new(config))))
}

/// A certificate directory (`--cert-dir`) holding `generated` and its key as `app.pem`.
fn cert_dir(prefix: &str, generated: &rcgen::CertifiedKey) -> Result<TempDir> {
    let dir = TempDir::new(prefix);
    std::fs::write(
        dir.path().join("app.pem"),
        format!("{}{}", generated.cert.pem(), generated.key_pair.serialize_pem()),
    )?;
    Ok(dir)
}

/// The labels of a container as Traefik set-ups usually have them: router `app` on the TLS
/// entrypoint with `tls=true` (and `extra`), router `open` with neither (every entrypoint),
/// router `everywhere` with `tls=true` and no entrypoints (every entrypoint, TLS only).
fn tls_router_tags(extra: &[&str]) -> Vec<String> {
    let mut tags = vec![
        "traefik.enable=true".to_string(),
        format!("traefik.http.routers.app.rule=Host(`{SECURE}`)"),
        "traefik.http.routers.app.entrypoints=websecure".to_string(),
        "traefik.http.routers.app.tls=true".to_string(),
        format!("traefik.http.routers.open.rule=Host(`{OPEN}`)"),
        format!("traefik.http.routers.everywhere.rule=Host(`{EVERYWHERE}`)"),
        "traefik.http.routers.everywhere.tls=true".to_string(),
    ];
    tags.extend(extra.iter().map(|t| t.to_string()));
    tags
}

/// The status and the backend instance (`-` when the proxy answered itself) of `GET /` for
/// `host`, over plain HTTP or TLS.
async fn outcome(connector: Option<&tokio_rustls::TlsConnector>, addr: &str, host: &str) -> Result<String> {
    let tcp = TcpStream::connect(addr).await?;
    let head = match connector {
        None => head_for(tcp, host, "/").await?,
        Some(connector) => {
            let tls = connector
                .connect(ServerName::try_from(host.to_string())?, tcp)
                .await
                .with_context(|| format!("TLS handshake with {addr} for {host}"))?;
            head_for(tls, host, "/").await?
        }
    };
    let status = head.split(' ').nth(1).unwrap_or_default().to_string();
    let instance = head
        .split("\r\n")
        .find_map(|l| l.strip_prefix("x-demo-instance: "))
        .unwrap_or("-");
    Ok(format!("{status} {instance}"))
}

/// Starts berth-control and a berth-proxy with `web` and the TLS entrypoint `websecure`
/// (certificates of `cert_dir`), and waits until the proxy routes the `routers` routers of
/// `service`.
/// Returns them with the proxy's entrypoint addresses and the control plane's snapshot.
async fn start_berth(
    consul: &Consul,
    service: &str,
    routers: usize,
    cert_dir: &std::path::Path,
) -> Result<(ControlPlane, Proxy, String, String, serde_json::Value)> {
    let cp = ControlPlane::start(consul, &[])?;
    cp.wait_ready().await?;
    let web = format!("127.0.0.1:{}", free_port());
    let websecure = format!("127.0.0.1:{}", free_port());
    let cert_dir = cert_dir.to_str().context("certificate directory path")?;
    let proxy = Proxy::start_with_entrypoints_and(
        &format!("proxy-{service}"),
        &cp.url(),
        &[("web", &web), ("websecure", &websecure)],
        &["--tls", "websecure", "--cert-dir", cert_dir],
    )?;
    let snapshot = cp
        .wait_snapshot(&format!("the {routers} {service} routers"), |s| {
            s["routes"]
                .as_array()
                .is_some_and(|r| r.iter().filter(|r| r["service"] == service).count() == routers)
        })
        .await?;
    proxy
        .wait_version(snapshot["version"].as_str().unwrap_or_default())
        .await?;
    Ok((cp, proxy, web, websecure, snapshot))
}

#[tokio::test]
async fn a_traefik_tls_router_is_served_over_https_only() -> Result<()> {
    let (generated, connector) = certificate(&[SECURE, OPEN, EVERYWHERE])?;
    let certs = cert_dir("tls-router-certs", &generated)?;
    let consul = Consul::start().await?;
    let backend = Backend::start("tls-router", "tls-router-1").await?;
    let tags = tls_router_tags(&["traefik.http.routers.app.tls.certresolver=le"]);
    let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
    consul
        .register_instance("tls-router", "tls-router-1", backend.port, &tags, false)
        .await?;
    let (_cp, proxy, web, websecure, snapshot) = start_berth(&consul, "tls-router", 3, certs.path()).await?;

    let routes = snapshot["routes"].as_array().context("routes")?;
    let tls_of = |name: &str| {
        routes
            .iter()
            .find(|r| r["name"] == name)
            .map(|r| r["tls"].clone())
    };
    assert_eq!(
        tls_of("tls-router/app"),
        Some(serde_json::json!(true)),
        "{snapshot:#}"
    );
    assert_eq!(
        tls_of("tls-router/open"),
        Some(serde_json::json!(false)),
        "{snapshot:#}"
    );
    assert_eq!(
        tls_of("tls-router/everywhere"),
        Some(serde_json::json!(true)),
        "{snapshot:#}"
    );
    let errors = snapshot["errors"].to_string();
    assert!(
        errors.contains("tls.certresolver=le") && errors.contains("--cert-dir"),
        "the certificate resolver is noted as not used: {errors}"
    );

    let logs = || proxy.proc.logs();
    // The TLS router: over HTTPS on websecure, and not over plain HTTP.
    let served = outcome(Some(&connector), &websecure, SECURE)
        .await
        .with_context(logs)?;
    assert_eq!(served, "200 tls-router-1");
    assert_eq!(
        outcome(None, &web, SECURE).await?,
        "404 -",
        "a TLS router takes no plain HTTP"
    );
    // A TLS router on every entrypoint: served on the TLS one only.
    let everywhere = outcome(Some(&connector), &websecure, EVERYWHERE)
        .await
        .with_context(logs)?;
    assert_eq!(everywhere, "200 tls-router-1");
    assert_eq!(
        outcome(None, &web, EVERYWHERE).await?,
        "404 -",
        "not over plain HTTP on web"
    );
    // The router without tls: on both entrypoints (websecure's TLS applies to every router).
    assert_eq!(outcome(None, &web, OPEN).await?, "200 tls-router-1");
    let open = outcome(Some(&connector), &websecure, OPEN)
        .await
        .with_context(logs)?;
    assert_eq!(open, "200 tls-router-1");

    // The proxy's admin API shows which routes are TLS-only.
    let proxy_snapshot = proxy.snapshot().await?;
    let app = proxy_snapshot["routes"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == "tls-router/app"))
        .context("tls-router/app in the proxy's admin API")?;
    assert_eq!(app["tls"], serde_json::json!(true), "{app:#}");
    Ok(())
}

/// The same labels through Traefik 3.7, its `websecure` entrypoint given entrypoint-level TLS
/// (`http.tls`, what `--tls websecure` is) and the test's certificate as its default, and through
/// Berth: every request both can be sent (Berth's websecure speaks only TLS) gets the same status
/// from the same backend.
#[tokio::test]
async fn tls_routers_route_as_traefik_does() -> Result<()> {
    let (generated, connector) = certificate(&[SECURE, OPEN, EVERYWHERE])?;
    let certs = cert_dir("tls-parity-certs", &generated)?;
    let traefik_files = TempDir::new("tls-parity-traefik");
    let (cert_file, key_file) = (
        traefik_files.path().join("cert.pem"),
        traefik_files.path().join("key.pem"),
    );
    std::fs::write(&cert_file, generated.cert.pem())?;
    std::fs::write(&key_file, generated.key_pair.serialize_pem())?;
    let dynamic = traefik_files.path().join("dynamic.yml");
    std::fs::write(
        &dynamic,
        format!(
            "tls:\n  stores:\n    default:\n      defaultCertificate:\n        certFile: {}\n        keyFile: {}\n",
            cert_file.display(),
            key_file.display()
        ),
    )?;

    let consul = Consul::start().await?;
    let backend = Backend::start("tls-parity", "tls-parity-1").await?;
    let tags = tls_router_tags(&[]);
    let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
    consul
        .register_instance("tls-parity", "tls-parity-1", backend.port, &tags, false)
        .await?;
    let options = TraefikOptions {
        extra_args: vec![
            "--entryPoints.websecure.http.tls=true".into(),
            format!("--providers.file.filename={}", dynamic.display()),
        ],
        ..TraefikOptions::default()
    };
    let traefik = Traefik::start(&consul.http_addr, &options).await?;
    let (_cp, proxy, web, websecure, _) = start_berth(&consul, "tls-parity", 3, certs.path()).await?;

    // (over TLS, entrypoint, host) → what Traefik answers.
    let cases: [(bool, &str, &str, &str); 6] = [
        (true, "websecure", SECURE, "200 tls-parity-1"),
        (false, "web", SECURE, "404 -"),
        (false, "web", OPEN, "200 tls-parity-1"),
        (true, "websecure", OPEN, "200 tls-parity-1"),
        (true, "websecure", EVERYWHERE, "200 tls-parity-1"),
        (false, "web", EVERYWHERE, "404 -"),
    ];
    for (tls, entrypoint, host, expected) in cases {
        let connector = tls.then_some(&connector);
        let traefik_addr = traefik.addr(entrypoint)?.to_string();
        // Traefik loads the catalog a moment after it answers /ping.
        let from_traefik = wait_until(
            &format!("traefik to answer {expected} for {host} on {entrypoint}"),
            Duration::from_secs(20),
            || async {
                let got = outcome(connector, &traefik_addr, host).await.ok();
                Ok(got.filter(|g| g == expected))
            },
        )
        .await
        .with_context(|| traefik.proc.logs())?;
        let berth_addr = if entrypoint == "web" { &web } else { &websecure };
        let from_berth = outcome(connector, berth_addr, host)
            .await
            .with_context(|| proxy.proc.logs())?;
        assert_eq!(
            from_berth, from_traefik,
            "{host} on {entrypoint} (tls: {tls}): Berth and Traefik differ"
        );
    }
    Ok(())
}
