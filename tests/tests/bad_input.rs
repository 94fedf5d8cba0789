//! Bad input is reported where an operator looks, and costs only what it must.

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use berth_tests::article::{Article, GO_HOST};
use berth_tests::{bin, free_port, wait_until, Consul, ControlPlane, Proxy, Result};

#[tokio::test]
async fn a_malformed_rule_rejects_one_route_and_says_why() -> Result<()> {
    let consul = Consul::start().await?;
    let _article = Article::start(&consul).await?;
    consul
        .register_instance(
            "empty_host",
            "empty-1",
            free_port(),
            &["traefik.enable=true", "traefik.frontend.rule=Host:"],
            false,
        )
        .await?;
    consul
        .register_instance(
            "odd_matcher",
            "odd-1",
            free_port(),
            &["traefik.enable=true", "traefik.frontend.rule=Hots:odd.example"],
            false,
        )
        .await?;
    let cp = ControlPlane::start(&consul, &[])?;
    let proxy = Proxy::start("proxy-a", &cp.url())?;

    let snapshot = cp
        .wait_snapshot("both bad services reported", |s| {
            s["errors"].as_array().map_or(0, Vec::len) == 2
        })
        .await?;
    let errors = snapshot["errors"].as_array().cloned().unwrap_or_default();
    let empty = errors
        .iter()
        .find(|e| e["service"] == "empty_host")
        .expect("empty_host reported");
    assert_eq!(empty["tag"], "traefik.frontend.rule=Host:");
    assert_eq!(empty["instance"], "empty-1");
    assert!(
        empty["error"].as_str().unwrap_or_default().contains("Host"),
        "{empty}"
    );
    let odd = errors
        .iter()
        .find(|e| e["service"] == "odd_matcher")
        .expect("odd_matcher reported");
    assert_eq!(odd["tag"], "traefik.frontend.rule=Hots:odd.example");
    assert!(
        odd["error"]
            .as_str()
            .unwrap_or_default()
            .contains("unknown matcher \"Hots\""),
        "{odd}"
    );

    let services: Vec<&str> = snapshot["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["service"].as_str())
        .collect();
    assert_eq!(
        services,
        vec!["web_go", "web_python"],
        "every other route is kept"
    );
    wait_until(
        "web_go routed despite the bad services",
        Duration::from_secs(15),
        || async { Ok((proxy.get(GO_HOST, "/").await?.status == 200).then_some(())) },
    )
    .await?;
    assert_eq!(proxy.get("odd.example", "/").await?.status, 404);

    let logs = cp.proc.logs();
    assert!(
        logs.contains("route rejected") && logs.contains("empty_host") && logs.contains("Hots:odd.example"),
        "{logs}"
    );

    // Fixing the tag brings the route in.
    consul
        .register_instance(
            "odd_matcher",
            "odd-1",
            free_port(),
            &["traefik.enable=true", "traefik.frontend.rule=Host:odd.example"],
            false,
        )
        .await?;
    cp.wait_snapshot("odd_matcher fixed", |s| {
        s["errors"].as_array().map_or(0, Vec::len) == 1 && s.to_string().contains("odd.example")
    })
    .await?;
    Ok(())
}

/// Runs a binary that must refuse to start; returns its stderr.
fn refuses(binary: &str, args: &[&str]) -> String {
    let out = Command::new(bin(binary))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("running the binary");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "{binary} {args:?} should fail to start; stderr: {stderr}"
    );
    assert!(
        !stderr.contains("stack backtrace") && !stderr.contains("Stack backtrace"),
        "no backtrace for operators: {stderr}"
    );
    stderr
}

#[test]
fn bad_proxy_flags_stop_it_with_a_message_naming_flag_and_value() {
    let admin = format!("127.0.0.1:{}", free_port());
    let cp = "http://127.0.0.1:1";
    let err = refuses(
        "berth-proxy",
        &[
            "--control-plane",
            cp,
            "--admin-addr",
            &admin,
            "--entrypoint",
            "http",
        ],
    );
    assert!(err.contains("--entrypoint") && err.contains("http"), "{err}");

    let err = refuses(
        "berth-proxy",
        &[
            "--control-plane",
            cp,
            "--admin-addr",
            &admin,
            "--entrypoint",
            "http=not-an-address",
        ],
    );
    assert!(
        err.contains("--entrypoint") && err.contains("not-an-address"),
        "{err}"
    );

    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_addr = taken.local_addr().expect("addr").to_string();
    let entry = format!("http={taken_addr}");
    let err = refuses(
        "berth-proxy",
        &[
            "--control-plane",
            cp,
            "--admin-addr",
            &admin,
            "--entrypoint",
            &entry,
        ],
    );
    assert!(err.contains("--entrypoint") && err.contains(&taken_addr), "{err}");

    let http = format!("http=127.0.0.1:{}", free_port());
    let err = refuses(
        "berth-proxy",
        &[
            "--control-plane",
            cp,
            "--admin-addr",
            &taken_addr,
            "--entrypoint",
            &http,
        ],
    );
    assert!(err.contains("--admin-addr") && err.contains(&taken_addr), "{err}");

    let err = refuses(
        "berth-proxy",
        &[
            "--control-plane",
            "not a url",
            "--admin-addr",
            &admin,
            "--entrypoint",
            &http,
        ],
    );
    assert!(
        err.contains("--control-plane") && err.contains("not a url"),
        "{err}"
    );
}

#[test]
fn bad_control_plane_flags_stop_it_with_a_message_naming_flag_and_value() {
    let free = format!("127.0.0.1:{}", free_port());
    let err = refuses(
        "berth-control",
        &["--grpc-addr", "nonsense", "--admin-addr", &free],
    );
    assert!(err.contains("--grpc-addr") && err.contains("nonsense"), "{err}");

    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_addr = taken.local_addr().expect("addr").to_string();
    let err = refuses(
        "berth-control",
        &["--grpc-addr", &taken_addr, "--admin-addr", &free],
    );
    assert!(err.contains("--grpc-addr") && err.contains(&taken_addr), "{err}");
    let grpc = format!("127.0.0.1:{}", free_port());
    let err = refuses(
        "berth-control",
        &["--grpc-addr", &grpc, "--admin-addr", &taken_addr],
    );
    assert!(err.contains("--admin-addr") && err.contains(&taken_addr), "{err}");

    let err = refuses(
        "berth-control",
        &[
            "--consul-addr",
            "ftp://x",
            "--grpc-addr",
            &grpc,
            "--admin-addr",
            &free,
        ],
    );
    assert!(err.contains("--consul-addr") && err.contains("ftp"), "{err}");
}
