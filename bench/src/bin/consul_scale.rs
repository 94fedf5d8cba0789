//! `berth-bench-consul-scale`: what berth-control's Consul watch costs at scale.
//!
//! Starts a Consul dev agent (or, with `--consul server`, a single server; on Consul's default
//! limits), writes `--services` services with `--instances` instances each straight into its
//! catalog (transactions of 64, spread over `--nodes` nodes), then starts berth-control (the binary
//! beside this one, or `--control`) and reports:
//!
//! - the time from its start to the first full snapshot (the first `published snapshot` log line
//!   with every route; `/healthz` 200 and `/api/snapshot` are checked too), with the CPU time,
//!   resident memory and Consul requests of that initial read;
//! - the TCP connections it holds to Consul's HTTP port: every 50 ms until the first full
//!   snapshot, then after it and after each change;
//! - per single change, averaged over `--changes` changes (`--change rule`: one service's rule
//!   moved to a new host; `--change instance`: one instance added to a service, then removed
//!   again; each waited for until berth-control logs `published snapshot`): the latency from the
//!   Consul write to the publication, Consul requests and service reads (from `/api/watch`) and
//!   CPU time.
//!
//! No proxy is connected: this measures the control plane alone. Every wait is bounded; all
//! traffic stays on 127.0.0.1. bench/consul_scale.sh runs it on release binaries and records the
//! result; `--services 50 --changes 2` is the smoke mode CI runs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use berth_tests::consul::{traefik_tags, Registration, TXN_MAX_OPS};
use berth_tests::proc::{cpu_time, rss_kib, tcp_connections_to};
use berth_tests::{http, published_routes, route_count, Sampler};
use clap::Parser;
use serde_json::Value;

#[path = "../common.rs"]
mod common;
use common::{at_least_one, spawn_control};
#[path = "../consul.rs"]
mod consul;
use consul::{BenchConsul, ConsulKind, Setup};

/// Measures what berth-control's Consul watch costs at scale, with no proxy connected.
///
/// Starts a Consul, writes --services services of --instances instances each (over --nodes nodes)
/// into its catalog, then starts berth-control and reports: the time from its start to the first
/// full snapshot, with the CPU time, resident memory and Consul requests of that initial read; the
/// TCP connections it holds to Consul; and, averaged over --changes single changes (--change), the
/// latency from the Consul write to the publication, the Consul requests, service reads and CPU
/// time per change. Every wait is bounded; all traffic stays on 127.0.0.1. bench/consul_scale.sh
/// runs it on release binaries and records the result.
#[derive(Debug, Parser)]
// A flag given twice takes its last value: bench/consul_scale.sh --smoke passes --services 50
// --changes 2 before the caller's flags.
#[command(name = "berth-bench-consul-scale", version, args_override_self = true)]
struct Cli {
    /// Number of services written into the Consul catalog (one route each)
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = at_least_one)]
    services: usize,

    /// Instances per service, at most 64 (a change rewrites a service's instances in one Consul
    /// transaction)
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = instances_per_service)]
    instances: usize,

    /// Number of Consul nodes the instances are spread over
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = at_least_one)]
    nodes: usize,

    /// Number of single changes to time, one after another
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = at_least_one)]
    changes: usize,

    /// What each change is
    #[arg(long, value_name = "KIND", value_enum, default_value_t = Change::Rule)]
    change: Change,

    #[command(flatten)]
    setup: Setup,
}

/// `--change`: what one timed change writes into the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Change {
    /// One service's rule moves to a new host: all its instances rewritten with new tags, in one
    /// transaction (the service list's tags change)
    Rule,
    /// One instance is added to a service, and removed again by the next change (the service
    /// list stays the same; Consul's summary shows the new instance count)
    Instance,
}

/// `--instances`: a count of at least 1 and at most [`TXN_MAX_OPS`].
fn instances_per_service(value: &str) -> Result<usize, String> {
    let n = at_least_one(value)?;
    if n > TXN_MAX_OPS {
        return Err(format!(
            "at most {TXN_MAX_OPS} (a change rewrites a service's instances in one transaction)"
        ));
    }
    Ok(n)
}

/// The command line, with its defaults filled in.
struct Args {
    services: usize,
    instances: usize,
    nodes: usize,
    changes: usize,
    change: Change,
    control: PathBuf,
    consul: ConsulKind,
}

fn parse_args() -> Result<Args> {
    let cli = Cli::parse();
    Ok(Args {
        services: cli.services,
        instances: cli.instances,
        nodes: cli.nodes,
        changes: cli.changes,
        change: cli.change,
        control: cli.setup.control()?,
        consul: cli.setup.consul,
    })
}

/// Every instance of service `i`, routed by `host`.
fn instances(args: &Args, i: usize, host: &str) -> Vec<Registration> {
    (0..args.instances)
        .map(|j| Registration {
            node: format!("host-{}", (i + j) % args.nodes),
            id: format!("svc-{i}-{j}"),
            service: format!("svc-{i}"),
            address: "127.0.0.1".to_string(),
            // Nothing listens there: routes are compiled and published, never requested.
            port: 20_000 + j as u16,
            tags: traefik_tags(host),
        })
        .collect()
}

/// `/api/watch`, or `None` when this berth-control does not serve it.
async fn watch(admin: &str) -> Option<Value> {
    http::get_json(&format!("http://{admin}/api/watch")).await.ok()
}

fn requests_total(watch: &Value) -> u64 {
    watch["requests"]
        .as_object()
        .map_or(0, |r| r.values().filter_map(Value::as_u64).sum())
}

/// `total (kind a, kind b, ...)` of the request counters' growth from `before` to `after`,
/// divided by `per`.
fn requests_delta(before: &Value, after: &Value, per: f64) -> String {
    let mut kinds = Vec::new();
    if let Some(after_kinds) = after["requests"].as_object() {
        for (kind, n) in after_kinds {
            let delta = n.as_u64().unwrap_or(0) - before["requests"][kind].as_u64().unwrap_or(0);
            if delta > 0 {
                kinds.push(format!("{kind} {}", fmt_avg(delta as f64 / per)));
            }
        }
    }
    format!(
        "{} ({})",
        fmt_avg((requests_total(after) - requests_total(before)) as f64 / per),
        kinds.join(", ")
    )
}

fn counter_delta(before: &Value, after: &Value, name: &str, per: f64) -> String {
    match (before[name].as_u64(), after[name].as_u64()) {
        (Some(b), Some(a)) => fmt_avg((a - b) as f64 / per),
        _ => "n/a".to_string(),
    }
}

fn fmt_avg(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Polls `check` every `every` until it holds, for at most `timeout`.
async fn poll(
    what: &str,
    every: Duration,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> bool,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !check().await {
        ensure!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(every).await;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    ensure!(
        args.control.exists(),
        "{} is missing: build berth-control in the same profile (or pass --control)",
        args.control.display()
    );
    let consul = BenchConsul::start(args.consul).await?;
    let api = consul.api();
    let version = api.get("/v1/agent/self").await?["Config"]["Version"]
        .as_str()
        .unwrap_or("?")
        .to_string();
    let catalog: Vec<Registration> = (0..args.services)
        .flat_map(|i| instances(&args, i, &format!("svc-{i}.example")))
        .collect();
    let started = Instant::now();
    api.register_many(&catalog).await?;
    println!(
        "catalog: {} services x {} instance(s) = {} instances on {} nodes, Consul {version} {} \
         on default limits",
        args.services,
        args.instances,
        catalog.len(),
        args.nodes,
        consul.describe()
    );
    println!(
        "registration: {} ({} transactions of up to {TXN_MAX_OPS} operations, 4 in flight)",
        ms(started.elapsed()),
        catalog.len().div_ceil(TXN_MAX_OPS)
    );

    let started = Instant::now();
    let (cp, _, admin) = spawn_control(&args.control, consul.http_addr(), &[])?;
    let pid = cp.pid().context("berth-control's pid")?;
    let consul_http: SocketAddr = consul
        .http_addr()
        .trim_start_matches("http://")
        .parse()
        .context("Consul's HTTP address")?;
    let connections = Sampler::start(Duration::from_millis(50), move || {
        std::future::ready(tcp_connections_to(pid, &[consul_http]).ok())
    });

    // The first full snapshot: the first `published snapshot` log line with every route (read
    // from the log, which costs berth-control nothing), and /healthz 200.
    let services = args.services;
    poll(
        "a published snapshot with every route",
        Duration::from_millis(5),
        Duration::from_secs(300),
        async || published_routes(&cp.logs()).contains(&services),
    )
    .await
    .with_context(|| cp.logs())?;
    let full = started.elapsed();
    let initial_cpu = cpu_time(pid)?;
    let initial_rss = rss_kib(pid)?;
    let during_read = connections.stop().await;
    // From here on, one sample after the read and one after each change.
    let mut after_read = vec![tcp_connections_to(pid, &[consul_http])?];
    let healthz = format!("http://{admin}/healthz");
    poll(
        "/healthz 200",
        Duration::from_millis(5),
        Duration::from_secs(10),
        async || http::status(&healthz).await.ok() == Some(200),
    )
    .await
    .with_context(|| cp.logs())?;
    let healthy = started.elapsed();
    let published = published_routes(&cp.logs());
    ensure!(
        published.first() == Some(&services),
        "the first published snapshot is not the whole catalog: {published:?}"
    );
    println!(
        "first full snapshot: published {:.2} s after start ({services} routes; /healthz 200 seen at {:.2} s)",
        full.as_secs_f64(),
        healthy.as_secs_f64()
    );
    let before = watch(&admin).await;
    match &before {
        Some(w) => println!(
            "initial read: CPU {}, RSS {}, Consul requests {}, full reads {}",
            ms(initial_cpu),
            mib(initial_rss),
            requests_delta(&Value::Null, w, 1.0),
            w["full_reads"]
        ),
        None => println!(
            "initial read: CPU {}, RSS {} (no /api/watch: Consul requests n/a)",
            ms(initial_cpu),
            mib(initial_rss)
        ),
    }

    // Single changes (see `Change`); each waited for until it is published.
    let cpu_before = cpu_time(pid)?;
    let mut latencies = Vec::new();
    for c in 0..args.changes {
        let published = published_routes(&cp.logs()).len();
        let written = Instant::now();
        match args.change {
            Change::Rule => {
                let i = (c * 7919 + 1) % args.services;
                api.set_services(&instances(&args, i, &format!("svc-{i}-change-{c}.example")))
                    .await?;
            }
            Change::Instance => {
                // Changes 2k and 2k + 1 add and remove the same instance.
                let i = (c / 2 * 7919 + 1) % args.services;
                let extra = Registration {
                    id: format!("svc-{i}-extra"),
                    port: 30_000,
                    ..instances(&args, i, &format!("svc-{i}.example")).remove(0)
                };
                if c % 2 == 0 {
                    api.set_services(std::slice::from_ref(&extra)).await?;
                } else {
                    api.deregister_service(&extra).await?;
                }
            }
        }
        poll(
            "the change to be published",
            Duration::from_millis(2),
            Duration::from_secs(10),
            async || published_routes(&cp.logs()).len() > published,
        )
        .await
        .with_context(|| cp.logs())?;
        latencies.push(written.elapsed());
        after_read.push(tcp_connections_to(pid, &[consul_http])?);
    }
    let cpu = cpu_time(pid)? - cpu_before;
    let after = watch(&admin).await;
    let rss = rss_kib(pid)?;

    let n = args.changes as f64;
    latencies.sort();
    println!(
        "per change (average of {} single changes ({}), each waited for until published):",
        args.changes,
        match args.change {
            Change::Rule => "one service's rule moved to a new host",
            Change::Instance => "one instance added to a service or removed",
        }
    );
    println!(
        "  Consul write -> published: median {}, max {}",
        ms(latencies[latencies.len() / 2]),
        ms(latencies[latencies.len() - 1])
    );
    match (&before, &after) {
        (Some(b), Some(a)) => {
            println!("  Consul requests: {}", requests_delta(b, a, n));
            println!(
                "  service reads: {}, services compiled: {}, full reads: {}",
                counter_delta(b, a, "service_reads", n),
                counter_delta(b, a, "compiled_services", n),
                counter_delta(b, a, "full_reads", n)
            );
        }
        _ => println!("  Consul requests: n/a (no /api/watch)"),
    }
    println!(
        "  control-plane CPU: {} ({} over {} changes; /proc/<pid>/stat, 10 ms ticks)",
        ms(cpu / args.changes as u32),
        ms(cpu),
        args.changes
    );
    let range = |s: &[usize]| match (s.iter().min(), s.iter().max()) {
        (Some(lo), Some(hi)) if lo == hi => format!("{lo}"),
        (Some(lo), Some(hi)) => format!("{lo}..{hi}"),
        _ => "-".to_string(),
    };
    println!(
        "connections to Consul's HTTP port: {} from start to the first full snapshot ({} samples, \
         every 50 ms), {} after it ({} samples: after the read and after each change)",
        range(&during_read),
        during_read.len(),
        range(&after_read),
        after_read.len()
    );
    // Checked last: serving 10,000 routes as JSON would weigh on the figures above.
    let snapshot = http::get_json(&format!("http://{admin}/api/snapshot")).await?;
    ensure!(
        route_count(&snapshot) == services,
        "/api/snapshot holds {} routes, not {services}",
        route_count(&snapshot)
    );
    println!(
        "RSS: {} after the initial read, {} after the changes",
        mib(initial_rss),
        mib(rss)
    );
    Ok(())
}
