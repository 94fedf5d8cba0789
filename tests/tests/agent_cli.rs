//! berth-agent's command line, run as a process: help, refusals named as typed, and giving up
//! after `-retry-attempts`. None of these needs Docker or Consul.

use std::time::Duration;

use berth_tests::{bin, free_port, Proc};

/// Runs berth-agent with `args` and `env` until it exits (at most 20s); returns its exit code and
/// everything it printed.
fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut proc =
        Proc::spawn("berth-agent-cli", &bin("berth-agent"), args, env).expect("starting berth-agent");
    let status = proc.wait_exit(Duration::from_secs(20));
    let logs = proc.logs();
    match status {
        Some(status) => (status.code(), logs),
        None => panic!("berth-agent {args:?} did not exit within 20s\n{logs}"),
    }
}

#[test]
fn help_describes_registrators_flags_and_the_articles_command_line() {
    let (code, out) = run(&["--help"], &[]);
    assert_eq!(code, Some(0), "{out}");
    for expected in [
        "-resync=1000 -retry-attempts=-1 -retry-interval=2000 -ip=\"192.168.3.26\" consul://192.168.3.26:8500",
        "--retry-attempts",
        "--internal",
        "--deregister",
        "--useIpFromLabel",
        "CONSUL_HTTP_TOKEN",
        "DOCKER_HOST",
        "REGISTRY_URI",
        "consul-tls://HOST:PORT",
        "CONSUL_CACERT",
        "CONSUL_TLSCERT",
        "CONSUL_TLSKEY",
    ] {
        assert!(out.contains(expected), "--help lacks {expected:?}:\n{out}");
    }
    // Go-style single dash works for help too.
    let (code, out) = run(&["-help"], &[]);
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn an_unknown_flag_is_refused_by_the_name_typed() {
    let (code, out) = run(
        &["-resync=5", "-retry-atempts=-1", "consul://127.0.0.1:8500"],
        &[],
    );
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("unknown flag \"-retry-atempts=-1\""), "{out}");
}

#[test]
fn a_registry_other_than_consul_is_refused_naming_it() {
    for uri in [
        "etcd://127.0.0.1:2379/services",
        "consul-unix:///tmp/consul.sock",
        "zookeeper://zk:2181",
    ] {
        let (code, out) = run(&["-ip=127.0.0.1", uri], &[]);
        assert_eq!(code, Some(2), "{uri}: {out}");
        assert!(
            out.contains(&format!("unsupported registry \"{uri}\"")),
            "{uri}: {out}"
        );
    }
    let (code, out) = run(&["-ip=127.0.0.1"], &[]);
    assert_eq!(code, Some(2), "a missing registry URI is an error: {out}");
    assert!(out.contains("REGISTRY_URI"), "{out}");
}

#[test]
fn unusable_consul_tls_settings_stop_the_agent_naming_the_variable_and_the_file() {
    let dir = berth_tests::TempDir::new("agent-cli-tls");
    let missing = dir.path().join("missing-ca.pem");
    let not_pem = dir.path().join("not-a-cert.pem");
    std::fs::write(&not_pem, "hello\n").expect("writing a file");
    let registry = "consul-tls://127.0.0.1:8501";
    for (path, problem) in [
        (&missing, "cannot read the file"),
        (&not_pem, "no certificate found in the file"),
    ] {
        let path = path.to_str().expect("a UTF-8 path");
        let (code, out) = run(&["-ip=127.0.0.1", registry], &[("CONSUL_CACERT", path)]);
        assert_eq!(code, Some(1), "{out}");
        assert!(out.contains(&format!("CONSUL_CACERT {path}: {problem}")), "{out}");
    }
    let (code, out) = run(
        &["-ip=127.0.0.1", registry],
        &[("CONSUL_TLSCERT", not_pem.to_str().expect("a UTF-8 path"))],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("a client certificate needs its key"), "{out}");
    let (code, out) = run(&[registry], &[("CONSUL_HTTP_SSL_VERIFY", "maybe")]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("CONSUL_HTTP_SSL_VERIFY=\"maybe\""), "{out}");
}

#[test]
fn bad_values_are_refused_at_start() {
    let (code, out) = run(&["-deregister=sometimes", "consul://127.0.0.1:8500"], &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("sometimes"), "{out}");
    let (code, out) = run(&["-ttl=10", "consul://127.0.0.1:8500"], &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("-ttl and -ttl-refresh must be given together"),
        "{out}"
    );
    let (code, out) = run(
        &["consul://127.0.0.1:8500"],
        &[("DOCKER_HOST", "ssh://somewhere")],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("DOCKER_HOST=\"ssh://somewhere\""), "{out}");
}

#[test]
fn gives_up_on_an_absent_docker_engine_after_the_retry_attempts() {
    let consul = format!("consul://127.0.0.1:{}", free_port());
    let started = std::time::Instant::now();
    let (code, out) = run(
        &[
            "-retry-attempts=2",
            "-retry-interval=100",
            "-ip=127.0.0.1",
            &consul,
        ],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    );
    assert_eq!(code, Some(1), "{out}");
    // Two retries, each logged with what it waits for, then the third failure ends it.
    assert_eq!(out.matches("; next in 100ms, ").count(), 2, "{out}");
    assert!(
        out.contains("waiting for the Docker Engine at unix:///nonexistent/docker.sock: "),
        "{out}"
    );
    assert!(
        out.contains("gave up waiting for the Docker Engine at unix:///nonexistent/docker.sock after 3 failed attempts"),
        "{out}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn every_setting_can_come_from_the_environment_and_logs_can_be_json() {
    let (code, out) = run(&["--help"], &[]);
    assert_eq!(code, Some(0), "{out}");
    for expected in [
        "BERTH_AGENT_RESYNC",
        "BERTH_AGENT_RETRY_ATTEMPTS",
        "BERTH_AGENT_REGISTRY",
        "--log-format",
        "--log-level",
    ] {
        assert!(out.contains(expected), "--help lacks {expected:?}:\n{out}");
    }

    // No flag at all: the registry, the retries and the log format from the environment.
    let consul = format!("consul://127.0.0.1:{}", free_port());
    let (code, out) = run(
        &[],
        &[
            ("BERTH_AGENT_REGISTRY", consul.as_str()),
            ("BERTH_AGENT_RETRY_ATTEMPTS", "1"),
            ("BERTH_AGENT_RETRY_INTERVAL", "100"),
            ("BERTH_AGENT_IP", "127.0.0.1"),
            ("BERTH_LOG_FORMAT", "json"),
            ("DOCKER_HOST", "unix:///nonexistent/docker.sock"),
        ],
    );
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(out.matches("; next in 100ms, ").count(), 1, "{out}");
    let json_lines: Vec<serde_json::Value> = out
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        json_lines
            .iter()
            .any(|l| l["level"] == "WARN" || l["level"] == "INFO"),
        "no JSON log line:\n{out}"
    );

    // The command line wins over the environment; a bad value names the flag.
    let (code, out) = run(
        &["-ttl=10", "-ttl-refresh=5", "consul://127.0.0.1:8500"],
        &[
            ("BERTH_AGENT_TTL", "3"),
            ("BERTH_AGENT_TTL_REFRESH", "9"),
            ("DOCKER_HOST", "unix:///nonexistent/docker.sock"),
        ],
    );
    // With the environment's -ttl=3 -ttl-refresh=9 it would be refused (2); it gets as far as Docker.
    assert_eq!(code, Some(1), "the command line's -ttl should win: {out}");
    let (code, out) = run(&["consul://127.0.0.1:8500"], &[("BERTH_AGENT_TTL", "10")]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("-ttl and -ttl-refresh must be given together (got -ttl=10"),
        "{out}"
    );
    let (code, out) = run(
        &["consul://127.0.0.1:8500"],
        &[("BERTH_AGENT_DEREGISTER", "sometimes")],
    );
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("sometimes"), "{out}");
}
