//! End-to-end tests of TLS entrypoints (`--tls`, `--cert-dir`) of the real `berth-proxy` binary:
//! certificates chosen by SNI (wildcards, the default), files added, replaced, removed and broken
//! while it runs, TLS 1.2 and 1.3, ALPN h2, `X-Forwarded-Proto: https`, `redirectScheme` between a
//! plain and a TLS entrypoint, the handshake timeout, and the flags' errors.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use berth_proto::v1::middleware::Kind as M;
use berth_proto::v1::RedirectScheme;
use berth_support::tls::AcceptAnyCertificate;
use bytes::Bytes;
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, SupportedProtocolVersion};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use support::*;

// ---------------------------------------------------------------------------------------------
// Certificates and the certificate directory

/// A self-signed certificate: its PEM, its key's PEM, and its DER (what a client sees).
struct Site {
    cert: String,
    key: String,
    der: Vec<u8>,
}

fn site(names: &[&str]) -> Site {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let generated = rcgen::generate_simple_self_signed(names).expect("rcgen");
    Site {
        cert: generated.cert.pem(),
        key: generated.key_pair.serialize_pem(),
        der: generated.cert.der().to_vec(),
    }
}

impl Site {
    /// The certificate and its key in one PEM file.
    fn pem(&self) -> String {
        format!("{}{}", self.cert, self.key)
    }
}

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// A temporary `--cert-dir`, removed on drop.
struct CertDir(PathBuf);

impl CertDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "berth-tls-test-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        Self(dir)
    }

    /// A directory holding `a.pem`: a certificate for `names`, returned too.
    fn with_site(names: &[&str]) -> (Self, Site) {
        let dir = Self::new();
        let site = site(names);
        dir.write("a.pem", &site.pem());
        (dir, site)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 path")
    }

    /// Writes a file atomically (a temporary file renamed over it), as deployment tools do.
    fn write(&self, name: &str, contents: &str) {
        let tmp = self.0.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, contents).expect("write");
        std::fs::rename(&tmp, self.0.join(name)).expect("rename");
    }

    fn remove(&self, name: &str) {
        std::fs::remove_file(self.0.join(name)).expect("remove");
    }
}

impl Drop for CertDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// A TLS client that shows what the proxy served

const BOTH: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

fn client_config(versions: &[&'static SupportedProtocolVersion], alpn: &[&str]) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate::new(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(config)
}

/// Connects and shakes hands, sending `sni` (none when `None`).
async fn connect(
    addr: SocketAddr,
    sni: Option<&str>,
    config: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let name = match sni {
        Some(name) => ServerName::try_from(name.to_owned()).expect("server name"),
        None => ServerName::IpAddress(addr.ip().into()),
    };
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(config).connect(name, tcp).await
}

/// The leaf certificate the proxy serves for `sni`; `None` when the handshake fails.
async fn served(addr: SocketAddr, sni: Option<&str>) -> Option<Vec<u8>> {
    let stream = connect(addr, sni, client_config(BOTH, &["http/1.1"]))
        .await
        .ok()?;
    let (_, conn) = stream.get_ref();
    conn.peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| leaf.to_vec())
}

/// One GET over TLS, in HTTP/2 when ALPN picks h2: the status, the version and the body.
async fn https_get(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    host: &str,
    path: &str,
) -> (StatusCode, Version, String) {
    let stream = connect(addr, Some(host), config).await.expect("TLS handshake");
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(stream);
    let response = if h2 {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .expect("h2 handshake");
        tokio::spawn(conn);
        let request = Request::get(format!("https://{host}{path}"))
            .body(Empty::<Bytes>::new())
            .expect("request");
        sender.send_request(request).await.expect("h2 request")
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .expect("http/1.1 handshake");
        tokio::spawn(conn);
        let request = Request::get(path)
            .header("host", host)
            .body(Empty::<Bytes>::new())
            .expect("request");
        sender.send_request(request).await.expect("http/1.1 request")
    };
    let (status, version) = (response.status(), response.version());
    let body = response.into_body().collect().await.expect("body").to_bytes();
    (status, version, String::from_utf8_lossy(&body).into_owned())
}

/// Waits until the proxy serves `der` for `sni`.
async fn serves_eventually(what: &str, addr: SocketAddr, sni: &str, der: &[u8]) {
    eventually(&format!("{what} to be served for {sni}"), || async {
        (served(addr, Some(sni)).await.as_deref() == Some(der)).then_some(())
    })
    .await
}

/// Shakes hands with `config` for `host` and checks the TLS version and ALPN protocol it agreed,
/// then GETs `path` over a new connection and returns the backend's echo of it, checking the
/// response is a 200 in HTTP version `http`.
async fn get_over_tls(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    host: &str,
    (tls, alpn): (rustls::ProtocolVersion, &str),
    path: &str,
    http: Version,
) -> serde_json::Value {
    let stream = connect(addr, Some(host), config.clone())
        .await
        .expect("handshake");
    let session = stream.get_ref().1;
    assert_eq!(session.protocol_version(), Some(tls));
    assert_eq!(session.alpn_protocol(), Some(alpn.as_bytes()));
    drop(stream);
    let (status, version, body) = https_get(addr, config, host, path).await;
    assert_eq!((status, version), (StatusCode::OK, http), "{body}");
    let seen = echo(&body);
    assert_eq!(seen["path"], path);
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https");
    seen
}

/// A proxy with entrypoints `web` (plain) and `websecure` (TLS, certificates from `dir`).
async fn start_proxy(cp: &FakeControlPlane, dir: &CertDir, extra: &[&str]) -> ProxyProcess {
    let mut args = vec![
        "--entrypoint",
        "web=127.0.0.1:0",
        "--entrypoint",
        "websecure=127.0.0.1:0",
        "--tls",
        "websecure",
        "--cert-dir",
        dir.path(),
    ];
    args.extend_from_slice(extra);
    ProxyProcess::start(&[cp.url()], &args).await
}

/// Routes `hosts` to one backend, on every entrypoint.
async fn route_to_backend(cp: &mut FakeControlPlane, backend: &Backend, hosts: &[&str]) {
    cp.expect_hello().await;
    cp.push(update(
        "v1",
        "n1",
        vec![route("site", hosts, "", "b")],
        vec![cluster("b", vec![endpoint(backend.addr)])],
    ));
    cp.expect_ack().await;
}

// ---------------------------------------------------------------------------------------------
// Tests

/// SNI picks the certificate among a combined `.pem`, a `.crt`/`.key` pair and a wildcard; no SNI
/// or an unknown name get the first file's; a TLS 1.2-only client is served, and the backend sees
/// `X-Forwarded-Proto: https`.
#[tokio::test]
async fn serves_certificates_by_sni() {
    let (dir, a) = CertDir::with_site(&["a.example", "www.a.example"]);
    let b = site(&["b.example"]);
    let wild = site(&["*.w.example"]);
    dir.write("b.crt", &b.cert);
    dir.write("b.key", &b.key);
    dir.write("wild.pem", &format!("{}{}", wild.key, wild.cert));
    let mut cp = FakeControlPlane::start().await;
    let backend = Backend::start("b").await;
    let proxy = start_proxy(&cp, &dir, &[]).await;
    let secure = proxy.entrypoints["websecure"];
    route_to_backend(&mut cp, &backend, &["a.example", "b.example", "x.w.example"]).await;

    assert_eq!(served(secure, Some("a.example")).await, Some(a.der.clone()));
    assert_eq!(served(secure, Some("www.a.example")).await, Some(a.der.clone()));
    assert_eq!(served(secure, Some("b.example")).await, Some(b.der.clone()));
    assert_eq!(served(secure, Some("x.w.example")).await, Some(wild.der.clone()));
    assert_eq!(
        served(secure, Some("y.x.w.example")).await,
        Some(a.der.clone()),
        "one label only"
    );
    assert_eq!(
        served(secure, Some("unknown.example")).await,
        Some(a.der.clone()),
        "the default"
    );
    assert_eq!(
        served(secure, None).await,
        Some(a.der.clone()),
        "no SNI: the default"
    );

    // TLS 1.2 only, HTTP/1.1.
    let config = client_config(&[&rustls::version::TLS12], &["http/1.1"]);
    let tls12 = (rustls::ProtocolVersion::TLSv1_2, "http/1.1");
    let seen = get_over_tls(secure, config, "b.example", tls12, "/hello", Version::HTTP_11).await;
    assert_eq!(seen["headers"]["x-forwarded-port"], "443");

    // The plain entrypoint still says http.
    let (status, _, body) = must_get(proxy.entrypoints["web"], "a.example", "/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(echo(&body)["headers"]["x-forwarded-proto"], "http");
}

/// ALPN offers h2 first; a client offering it gets HTTP/2 over TLS 1.3, end to end.
#[tokio::test]
async fn negotiates_h2_by_alpn() {
    let (dir, _) = CertDir::with_site(&["a.example"]);
    let mut cp = FakeControlPlane::start().await;
    let backend = Backend::start("b").await;
    let proxy = start_proxy(&cp, &dir, &[]).await;
    let secure = proxy.entrypoints["websecure"];
    route_to_backend(&mut cp, &backend, &["a.example"]).await;

    let config = client_config(&[&rustls::version::TLS13], &["h2", "http/1.1"]);
    let tls13 = (rustls::ProtocolVersion::TLSv1_3, "h2");
    let seen = get_over_tls(secure, config, "a.example", tls13, "/h2", Version::HTTP_2).await;
    assert_eq!(seen["headers"]["x-forwarded-host"], "a.example");
}

/// Files replaced, added, removed and broken while the proxy runs are picked up without a restart;
/// a bad file is reported in the log and skipped while the others keep serving.
#[tokio::test]
async fn reloads_the_certificate_directory() {
    let (dir, a1) = CertDir::with_site(&["a.example"]);
    dir.write(
        "broken.pem",
        "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n",
    );
    let cp = FakeControlPlane::start().await;
    let proxy = start_proxy(&cp, &dir, &["--cert-reload-interval", "100ms"]).await;
    let secure = proxy.entrypoints["websecure"];
    let reported = |file: &'static str| {
        let proxy = &proxy;
        move || {
            let found = proxy
                .logs()
                .iter()
                .any(|l| l.contains("skipping a certificate file") && l.contains(file));
            async move { found.then_some(()) }
        }
    };
    eventually("broken.pem reported at start", reported("broken.pem")).await;
    assert_eq!(served(secure, Some("a.example")).await, Some(a1.der.clone()));

    // Replaced.
    let a2 = site(&["a.example"]);
    dir.write("a.pem", &a2.pem());
    serves_eventually("the replaced certificate", secure, "a.example", &a2.der).await;

    // Added, as a .crt/.key pair.
    let c = site(&["c.example"]);
    dir.write("c.key", &c.key);
    dir.write("c.crt", &c.cert);
    serves_eventually("the added certificate", secure, "c.example", &c.der).await;

    // A bad file added: reported, skipped, the others still served.
    let d = site(&["d.example"]);
    dir.write("d.pem", &d.cert); // no key
    eventually("d.pem reported", reported("d.pem")).await;
    assert!(proxy
        .logs()
        .iter()
        .any(|l| l.contains("d.pem") && l.contains("no private key")));
    assert_eq!(served(secure, Some("c.example")).await, Some(c.der.clone()));
    assert_eq!(served(secure, Some("a.example")).await, Some(a2.der.clone()));
    assert_eq!(
        served(secure, Some("d.example")).await,
        Some(a2.der.clone()),
        "the default"
    );

    // Removed: its name falls back to the default.
    dir.remove("c.crt");
    dir.remove("c.key");
    serves_eventually(
        "the default instead of the removed certificate",
        secure,
        "c.example",
        &a2.der,
    )
    .await;
}

/// Traefik's redirectScheme between the entrypoints: a router on every entrypoint with a
/// redirect to https redirects on the plain one and serves on the TLS one (the request is already
/// https there).
#[tokio::test]
async fn redirect_scheme_between_entrypoints() {
    let (dir, _) = CertDir::with_site(&["a.example"]);
    let mut cp = FakeControlPlane::start().await;
    let backend = Backend::start("b").await;
    let proxy = start_proxy(&cp, &dir, &[]).await;
    cp.expect_hello().await;
    let redirect = chain(
        route("site", &["a.example"], "", "b"),
        vec![(
            "to-https",
            M::RedirectScheme(RedirectScheme {
                scheme: "https".into(),
                port: String::new(),
                permanent: true,
            }),
        )],
    );
    cp.push(update(
        "v1",
        "n1",
        vec![redirect],
        vec![cluster("b", vec![endpoint(backend.addr)])],
    ));
    cp.expect_ack().await;

    let (status, headers, _) = must_get(proxy.entrypoints["web"], "a.example", "/p?q=1").await;
    assert_eq!(status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(headers["location"], "https://a.example/p?q=1");

    let config = client_config(BOTH, &["http/1.1"]);
    let (status, _, body) = https_get(proxy.entrypoints["websecure"], config, "a.example", "/p?q=1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(echo(&body)["headers"]["x-forwarded-proto"], "https");
}

/// A client that never finishes its handshake holds up no one, and is cut off after
/// `--tls-handshake-timeout`.
#[tokio::test]
async fn slow_handshakes_time_out_without_blocking_others() {
    let (dir, a) = CertDir::with_site(&["a.example"]);
    let cp = FakeControlPlane::start().await;
    let proxy = start_proxy(&cp, &dir, &["--tls-handshake-timeout", "500ms"]).await;
    let secure = proxy.entrypoints["websecure"];

    let mut silent = TcpStream::connect(secure).await.expect("connect");
    assert_eq!(served(secure, Some("a.example")).await, Some(a.der.clone()));
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(DEADLINE, silent.read(&mut buf))
        .await
        .expect("the proxy closes a stalled handshake");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

/// `--tls` without `--cert-dir`, an unknown entrypoint, and a missing directory stop the binary.
#[test]
fn bad_tls_flags_stop_the_binary() {
    let ep = ["--entrypoint", "web=127.0.0.1:0,websecure=127.0.0.1:0"];
    let (code, stderr) = run_to_exit(&[&ep[..], &["--tls", "websecure"]].concat());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--tls needs --cert-dir"), "{stderr}");

    let (code, stderr) = run_to_exit(&[&ep[..], &["--tls", "secure", "--cert-dir", "/tmp"]].concat());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--tls secure: there is no --entrypoint"),
        "{stderr}"
    );

    let missing = Path::new("/nonexistent/berth-certs");
    let (code, stderr) = run_to_exit(
        &[
            &ep[..],
            &[
                "--tls",
                "websecure",
                "--cert-dir",
                missing.to_str().expect("path"),
            ],
        ]
        .concat(),
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("--cert-dir /nonexistent/berth-certs: cannot read the directory"),
        "{stderr}"
    );
}
