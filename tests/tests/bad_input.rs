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

/// Starts `binary` with `args`, expects it to refuse, and checks that its message names every
/// string in `names` (the flag and the value at fault).
fn refuses_naming(binary: &str, args: &[&str], names: &[&str]) {
    let err = refuses(binary, args);
    for name in names {
        assert!(
            err.contains(name),
            "{binary} {args:?}: the error should name {name:?}: {err}"
        );
    }
}

#[test]
fn bad_proxy_flags_stop_it_with_a_message_naming_flag_and_value() {
    let admin = format!("127.0.0.1:{}", free_port());
    let http = format!("http=127.0.0.1:{}", free_port());
    let cp = "http://127.0.0.1:1";
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_addr = taken.local_addr().expect("addr").to_string();
    let taken_entry = format!("http={taken_addr}");
    // (control plane, admin address, entrypoint, what the error must name)
    let cases: [(&str, &str, &str, &[&str]); 5] = [
        (cp, &admin, "http", &["--entrypoint", "http"]),
        (
            cp,
            &admin,
            "http=not-an-address",
            &["--entrypoint", "not-an-address"],
        ),
        (cp, &admin, &taken_entry, &["--entrypoint", &taken_addr]),
        (cp, &taken_addr, &http, &["--admin-addr", &taken_addr]),
        ("not a url", &admin, &http, &["--control-plane", "not a url"]),
    ];
    for (control_plane, admin_addr, entrypoint, names) in cases {
        let args = [
            "--control-plane",
            control_plane,
            "--admin-addr",
            admin_addr,
            "--entrypoint",
            entrypoint,
        ];
        refuses_naming("berth-proxy", &args, names);
    }
}

#[test]
fn bad_control_plane_flags_stop_it_with_a_message_naming_flag_and_value() {
    let free = format!("127.0.0.1:{}", free_port());
    let grpc = format!("127.0.0.1:{}", free_port());
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_addr = taken.local_addr().expect("addr").to_string();
    // (consul address, gRPC address, admin address, what the error must name)
    let cases: [(&str, &str, &str, &[&str]); 4] = [
        (
            "http://127.0.0.1:8500",
            "nonsense",
            &free,
            &["--grpc-addr", "nonsense"],
        ),
        (
            "http://127.0.0.1:8500",
            &taken_addr,
            &free,
            &["--grpc-addr", &taken_addr],
        ),
        (
            "http://127.0.0.1:8500",
            &grpc,
            &taken_addr,
            &["--admin-addr", &taken_addr],
        ),
        ("ftp://x", &grpc, &free, &["--consul-addr", "ftp"]),
    ];
    for (consul, grpc_addr, admin_addr, names) in cases {
        let args = [
            "--consul-addr",
            consul,
            "--grpc-addr",
            grpc_addr,
            "--admin-addr",
            admin_addr,
        ];
        refuses_naming("berth-control", &args, names);
    }
}

/// A malformed Traefik v3 rule rejects its router only: the error names the service, the router,
/// the tag and the position in the rule, in the admin API and in the log, and the service's other
/// router keeps routing.
#[tokio::test]
async fn a_malformed_router_rule_costs_that_router_only() -> Result<()> {
    let consul = Consul::start().await?;
    let backend = berth_tests::Backend::start("api", "api-1").await?;
    let bad_rule = "traefik.http.routers.broken.rule=Host(`api.example`) && (PathPrefix(`/v2`)";
    consul
        .register_instance(
            "api",
            "api-1",
            backend.port,
            &[
                "traefik.enable=true",
                "traefik.http.routers.good.rule=Host(`api.example`)",
                bad_rule,
            ],
            false,
        )
        .await?;
    let cp = ControlPlane::start(&consul, &[])?;
    let proxy = Proxy::start("proxy-v3", &cp.url())?;

    let snapshot = cp
        .wait_snapshot("the broken router reported", |s| {
            s["errors"].as_array().is_some_and(|e| !e.is_empty())
        })
        .await?;
    let errors = snapshot["errors"].as_array().cloned().unwrap_or_default();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let error = &errors[0];
    assert_eq!(error["service"], "api");
    assert_eq!(error["router"], "broken", "{error}");
    assert_eq!(error["tag"], bad_rule);
    let position = error["position"].as_u64().expect("a position in the rule");
    let rule = bad_rule.split_once('=').map(|(_, r)| r).unwrap_or_default();
    assert!(position as usize <= rule.len(), "{error}");

    let routes: Vec<&str> = snapshot["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(routes, vec!["api/good"], "the other router is kept");
    wait_until("the good router to route", Duration::from_secs(15), || async {
        Ok((proxy.get("api.example", "/").await?.status == 200).then_some(()))
    })
    .await?;
    wait_until(
        "the log to name the router and the position",
        Duration::from_secs(5),
        || async {
            let logs = cp.proc.logs();
            Ok(logs
                .lines()
                .any(|l| {
                    l.contains("route rejected")
                        && l.contains("router=broken")
                        && l.contains(&format!("position={position}"))
                })
                .then_some(()))
        },
    )
    .await?;
    Ok(())
}
