//! Mutual TLS on the route discovery stream, with real processes and certificates the test
//! generates: berth-control serving gRPC over TLS and requiring client certificates from one CA,
//! berth-proxy verifying the control plane against a CA and presenting its own certificate.
//!
//! Proven here: a proxy with the right CA and certificate streams routes; a proxy trusting the
//! wrong CA, one without a certificate and one whose certificate another CA signed are refused
//! (each error naming the flag to check) and never listed as proxies; a plaintext client gets
//! nothing; a replaced server certificate is used for new connections without a restart.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use berth_proto::v1::proxy_message::Kind;
use berth_proto::v1::route_discovery_client::RouteDiscoveryClient;
use berth_proto::v1::{Hello, ProxyMessage};
use berth_tests::article::Article;
use berth_tests::{wait_until, Consul, ControlPlane, Proxy, Result, TempDir};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Result<Ca> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let cert = params.self_signed(&key)?;
    Ok(Ca { cert, key })
}

/// A certificate for `names` signed by `ca`, written as `<stem>.pem` and `<stem>-key.pem`.
fn leaf(
    dir: &Path,
    stem: &str,
    ca: &Ca,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> Result<(PathBuf, PathBuf)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
    params.distinguished_name.push(DnType::CommonName, stem);
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, &ca.cert, &ca.key)?;
    let (cert_path, key_path) = (
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}-key.pem")),
    );
    std::fs::write(&cert_path, cert.pem())?;
    std::fs::write(&key_path, key.serialize_pem())?;
    Ok((cert_path, key_path))
}

fn write_ca(dir: &Path, stem: &str, ca: &Ca) -> Result<PathBuf> {
    let path = dir.join(format!("{stem}.pem"));
    std::fs::write(&path, ca.cert.pem())?;
    Ok(path)
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap_or_default()
}

/// Waits until `proxy`'s log says `what`.
async fn wait_log(proxy: &Proxy, what: &str) -> Result<String> {
    wait_until(
        &format!("{} to log {what:?}", proxy.node_id),
        Duration::from_secs(20),
        || async {
            let logs = proxy.proc.logs();
            Ok(logs.contains(what).then_some(logs))
        },
    )
    .await
}

#[tokio::test]
async fn mtls_accepts_the_right_certificates_refuses_the_rest_and_reloads() -> Result<()> {
    let dir = TempDir::new("control-mtls");
    let trusted = ca("Berth control CA")?;
    let other = ca("Some other CA")?;
    let ca_path = write_ca(dir.path(), "ca", &trusted)?;
    let other_ca_path = write_ca(dir.path(), "other-ca", &other)?;
    let server_names = ["localhost", "127.0.0.1"];
    let (server_cert, server_key) = leaf(
        dir.path(),
        "server",
        &trusted,
        &server_names,
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    let (client_cert, client_key) = leaf(
        dir.path(),
        "client",
        &trusted,
        &["proxy"],
        ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    let (stranger_cert, stranger_key) = leaf(
        dir.path(),
        "stranger",
        &other,
        &["proxy"],
        ExtendedKeyUsagePurpose::ClientAuth,
    )?;

    let consul = Consul::start().await?;
    let _article = Article::start(&consul).await?;
    let cp = ControlPlane::start(
        &consul,
        &[
            "--grpc-tls-cert",
            s(&server_cert),
            "--grpc-tls-key",
            s(&server_key),
            "--grpc-client-ca",
            s(&ca_path),
        ],
    )?;
    let version = cp
        .wait_snapshot("the article's routes", |s| berth_tests::route_count(s) == 2)
        .await?["version"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let url = format!("https://{}", cp.grpc_addr);
    // A proxy trusting `ca` and showing the client certificate `cert` (and its key).
    let mtls_proxy = |name: &str, ca: &Path, (cert, key): (&Path, &Path)| {
        let flags = [
            "--control-plane-ca",
            s(ca),
            "--control-plane-cert",
            s(cert),
            "--control-plane-key",
            s(key),
        ];
        Proxy::start_with(name, &url, &flags)
    };
    assert!(
        cp.proc.logs().contains("client certificates required (mTLS)"),
        "{}",
        cp.proc.logs()
    );

    // The right CA and certificate: routes stream.
    let good = mtls_proxy("mtls-good", &ca_path, (&client_cert, &client_key))?;
    good.wait_version(&version).await?;

    // The wrong CA on the proxy's side: refused, naming the flag.
    let wrong_ca = mtls_proxy("mtls-wrong-ca", &other_ca_path, (&client_cert, &client_key))?;
    let logs = wait_log(&wrong_ca, "control plane unavailable").await?;
    assert!(
        logs.contains("--control-plane-ca") && logs.contains("UnknownIssuer"),
        "{logs}"
    );

    // No client certificate, and one another CA signed: the control plane refuses both.
    let anonymous = Proxy::start_with("mtls-anonymous", &url, &["--control-plane-ca", s(&ca_path)])?;
    let logs = wait_log(&anonymous, "control plane unavailable").await?;
    assert!(logs.contains("--control-plane-cert"), "{logs}");
    let stranger = mtls_proxy("mtls-stranger", &ca_path, (&stranger_cert, &stranger_key))?;
    wait_log(&stranger, "control plane unavailable").await?;
    wait_until(
        "the refusals in berth-control's log",
        Duration::from_secs(10),
        || async { Ok(cp.proc.logs().contains("TLS handshake refused").then_some(())) },
    )
    .await?;

    // A plaintext client gets nothing at all.
    let plain = async {
        let mut client = RouteDiscoveryClient::connect(format!("http://{}", cp.grpc_addr)).await?;
        let (tx, rx) = mpsc::channel(1);
        tx.send(ProxyMessage {
            kind: Some(Kind::Hello(Hello {
                node_id: "plain".into(),
                ..Default::default()
            })),
        })
        .await?;
        let mut updates = client.stream(ReceiverStream::new(rx)).await?.into_inner();
        anyhow::Ok(updates.message().await?)
    };
    let answer = tokio::time::timeout(Duration::from_secs(10), plain).await;
    assert!(
        !matches!(answer, Ok(Ok(Some(_)))),
        "a plaintext client got routes: {answer:?}"
    );

    // Only the proxy with the right certificate is listed, and routes.
    let list = cp.proxies().await?;
    let nodes: Vec<&str> = list
        .as_array()
        .context("a list")?
        .iter()
        .filter_map(|p| p["node_id"].as_str())
        .collect();
    assert_eq!(nodes, ["mtls-good"]);
    for refused in [&wrong_ca, &anonymous, &stranger] {
        assert_eq!(refused.version().await?, None, "{}", refused.node_id);
    }

    // Reload: the server certificate is replaced by one the other CA signed; a new proxy that
    // trusts only the other CA connects without berth-control restarting.
    let (new_cert, new_key) = leaf(
        dir.path(),
        "server-new",
        &other,
        &server_names,
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    std::fs::rename(&new_key, &server_key)?;
    std::fs::rename(&new_cert, &server_cert)?;
    wait_until(
        "berth-control to reload its certificate",
        Duration::from_secs(20),
        || async { Ok(cp.proc.logs().contains("certificates reloaded").then_some(())) },
    )
    .await?;
    let renewed = mtls_proxy("mtls-renewed", &other_ca_path, (&client_cert, &client_key))?;
    renewed.wait_version(&version).await?;
    Ok(())
}

#[tokio::test]
async fn an_https_control_plane_needs_a_ca_and_plaintext_says_so() -> Result<()> {
    let out = std::process::Command::new(berth_tests::bin("berth-proxy"))
        .args([
            "--control-plane",
            "https://127.0.0.1:1",
            "--entrypoint",
            "http=127.0.0.1:0",
        ])
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--control-plane-ca"), "{stderr}");

    let consul = Consul::start().await?;
    let cp = ControlPlane::start(&consul, &[])?;
    cp.wait_ready().await?;
    assert!(
        cp.proc.logs().contains("plaintext, on loopback"),
        "{}",
        cp.proc.logs()
    );
    Ok(())
}
