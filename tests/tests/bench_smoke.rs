//! The benchmark suite's smoke run, so CI notices when `bench/bench.sh` or one of its parts
//! breaks: `bench/bench.sh --smoke` on the debug binaries (tiny sizes, a second of load per
//! target), checked for every part's result lines (and that the pinned part's proxies ran on
//! cores of their own). Speed is not checked here; the figures are
//! in bench/RESULTS.md. Needs wrk, h2load, nginx, haproxy, valgrind and perf (scripts/setup.sh
//! load; perf's part is skipped, saying so, where it cannot read the syscall tracepoints),
//! Consul and Traefik.

use std::time::Duration;

use anyhow::{ensure, Context};
use berth_tests::proc::run_to_end;
use berth_tests::{bin, workspace_root, Result};

#[tokio::test]
async fn bench_suite_smoke_run_produces_every_result_line() -> Result<()> {
    // The directory of the debug binaries the suite runs against (built by
    // `cargo build --workspace --bins`, beside berth-bench-*).
    let proxy = bin("berth-proxy");
    let bin_dir = proxy.parent().context("berth-proxy has a directory")?;
    for name in [
        "berth-control",
        "berth-bench-propagation",
        "berth-bench-fanout",
        "berth-bench-consul-scale",
        "berth-bench-ceiling",
    ] {
        bin(name);
    }
    let root = workspace_root();
    let mut command = tokio::process::Command::new("bash");
    command
        .arg(root.join("bench/bench.sh"))
        .args(["--smoke", "--no-build", "--bin-dir"])
        .arg(bin_dir)
        .current_dir(&root);
    let (stdout, stderr) =
        run_to_end(&mut command, Duration::from_secs(400), "bench/bench.sh --smoke").await?;
    let expected = [
        // proxy: every target measured, ratios computed, in each scenario
        "result scenario=1 workers=1 target=berth-proxy rps=",
        "result scenario=1 workers=1 target=nginx rps=",
        "result scenario=1 workers=1 target=haproxy rps=",
        "result scenario=20 workers=1 target=berth-proxy rps=",
        "result scenario=mw workers=1 target=berth-proxy rps=",
        "result scenario=h2 workers=1 target=berth-proxy rps=",
        "result scenario=tls workers=1 target=berth-proxy rps=",
        "result scenario=tls workers=1 target=haproxy rps=",
        "result scenario=h2tls workers=1 target=berth-proxy rps=",
        "ratio scenario=h2tls workers=1 berth-proxy/nginx rps=",
        "ratio scenario=1 workers=1 berth-proxy/nginx rps=",
        // propagation
        "register -> every berth-proxy routes: n=3 p50=",
        "deregister -> every berth-proxy answers 404: n=3 p50=",
        // fan-out and scale
        "Consul write -> every proxy ACKed: p50",
        "KiB per connected proxy",
        "bytes encoded",
        "first full snapshot: published",
        "single changes (one service's rule moved to a new host)",
        "single changes (one instance added to a service or removed)",
        // memory
        "berth-proxy_rss_idle_mib=",
        // instructions per request, counted under callgrind
        "instructions scenario=1 workers=1 target=berth-proxy requests=200 per_request=",
        "instructions scenario=mw workers=1 target=nginx requests=200 per_request=",
        "ratio scenario=1 workers=1 berth-proxy/ceiling-raw-raw instructions=",
        // system calls per request, counted by perf (or said to be skipped where perf cannot)
        if stdout.contains("syscalls: skipped: ") {
            "syscalls: skipped: perf cannot read the syscall tracepoints here"
        } else {
            "syscalls scenario=1 workers=1 target=nginx requests=200 all="
        },
        // ceiling: the designs of the bare forwarder, each against nginx
        "result scenario=1 workers=1 target=ceiling-raw-raw rps=",
        "ratio scenario=1 workers=1 ceiling-raw-raw/nginx rps=",
        "ratio scenario=1 workers=1 ceiling-hyper-hyper/nginx rps=",
        "ratio scenario=1 workers=1 ceiling-raw-hyper/nginx rps=",
        "ratio scenario=1 workers=1 ceiling-hyper-raw/nginx rps=",
        "ratio scenario=1 workers=1 ceiling-hyper-conn/nginx rps=",
    ];
    let missing: Vec<&str> = expected
        .iter()
        .copied()
        .filter(|line| !stdout.contains(line))
        .collect();
    ensure!(
        missing.is_empty(),
        "bench/bench.sh --smoke printed no {missing:?}:\n{stdout}\n{stderr}"
    );
    // The pinned part ran its proxies on cores the load does not use, where there are two or more.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut pinned = 0;
    // No target answered anything but 2xx: the routes are what the figures claim to measure.
    for line in stdout.lines().filter(|l| l.starts_with("result ")) {
        ensure!(line.contains("errors=\"0\""), "errors during the load: {line}");
        // How the proxy was scheduled: a figure, or nan where the kernel keeps no schedstat.
        for name in ["preempted_per_kreq", "runq_wait_pct"] {
            ensure!(
                figure(field(line, name)?, |v| v >= 0.0),
                "{name} is not a figure in: {line}"
            );
        }
        let cpus = cpu_list(field(line, "proxy_cpus")?).with_context(|| format!("in: {line}"))?;
        match field(line, "placement")? {
            "shared" => {}
            "pinned" => {
                // The client, backends and Consul run on core 0 and up; the proxy on the last ones.
                ensure!(
                    !cpus.is_empty() && !cpus.contains(&0),
                    "a pinned proxy allowed on core 0: {line}"
                );
                pinned += 1;
            }
            other => anyhow::bail!("placement {other} is neither pinned nor shared: {line}"),
        }
    }
    if cores > 1 {
        ensure!(
            pinned >= 2,
            "the pinned part pinned {pinned} of its two targets on {cores} cores:\n{stdout}"
        );
    }
    // berth-proxy's ratios to each peer, also as the median of the rounds' own ratios.
    for line in stdout
        .lines()
        .filter(|l| l.starts_with("ratio ") && l.contains(" berth-proxy/") && l.contains(" rps="))
    {
        for name in ["rps_paired", "per_core_paired"] {
            ensure!(
                figure(field(line, name)?, |v| v > 0.0),
                "{name} is not a ratio in: {line}"
            );
        }
    }
    Ok(())
}

/// The value of a result line's `name=value` field.
fn field<'a>(line: &'a str, name: &str) -> Result<&'a str> {
    line.split(' ')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .with_context(|| format!("no {name} in: {line}"))
}

/// A figure the check accepts, or `nan` (where there was nothing to measure).
fn figure(value: &str, accept: impl Fn(f64) -> bool) -> bool {
    value == "nan" || value.parse::<f64>().is_ok_and(accept)
}

/// The cores of a kernel CPU list such as `1` or `0-3,6`.
fn cpu_list(list: &str) -> Result<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in list.split(',') {
        let (first, last) = part.split_once('-').unwrap_or((part, part));
        let (first, last): (usize, usize) = (
            first.parse().with_context(|| format!("CPU list {list}"))?,
            last.parse().with_context(|| format!("CPU list {list}"))?,
        );
        cpus.extend(first..=last);
    }
    Ok(cpus)
}
