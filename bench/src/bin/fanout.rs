//! `berth-bench-fanout`: what pushing one catalog change to many subscribed proxies costs.
//!
//! Starts a Consul dev agent (or, with `--consul server`, a single server), writes `--services`
//! services with `--instances` instances each into its catalog, starts berth-control (the binary
//! beside this one, or `--control`), then opens `--proxies` lightweight protocol clients in this
//! process, each on its own TCP connection: a client sends a Hello, and answers every RouteUpdate
//! with an Ack echoing its version and nonce, whatever the update's body (snapshot, delta or
//! up-to-date), as a proxy that applies it would. It reports:
//!
//! - the time until every client holds its first snapshot, and the control plane's resident
//!   memory per connected proxy (RSS with the clients minus RSS before them, divided by them);
//! - per single change (`--changes` times: one instance of one service gets a new port, one
//!   Consul transaction): the time from the Consul write until every client has ACKed an update
//!   (p50/p99 over the changes, and over every client's own ACK), the encoded size of the update
//!   one proxy received (bytes on the wire, before gRPC's 5-byte frame header and HTTP/2 framing)
//!   and the control plane's CPU time (utime + stime from /proc, 10 ms ticks).
//!
//! Not for data-plane speed (bench/proxy.sh) nor for the Consul watch alone
//! (berth-bench-consul-scale). Every wait is bounded; all traffic stays on 127.0.0.1.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use berth_proto::v1::proxy_message::Kind;
use berth_proto::v1::route_discovery_client::RouteDiscoveryClient;
use berth_proto::v1::route_update::Body;
use berth_proto::v1::{Ack, Hello, ProxyMessage, RouteUpdate};
use berth_tests::consul::{traefik_tags, Registration};
use berth_tests::http;
use berth_tests::proc::{cpu_time, rss_kib};
use clap::Parser;
use prost::Message;
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;

#[path = "../common.rs"]
mod common;
use common::{at_least_one, spawn_control};
#[path = "../consul.rs"]
mod consul;
use consul::{BenchConsul, ConsulKind, Setup};

/// Measures what pushing one catalog change to many subscribed proxies costs berth-control.
///
/// Starts a Consul, writes --services services of --instances instances each into its catalog,
/// starts berth-control, then opens --proxies lightweight protocol clients in this process (one TCP
/// connection each; each ACKs every update as a proxy would). Reports the time until every client
/// holds its first snapshot and berth-control's resident memory per connected proxy; then, over
/// --changes single changes (one instance gets a new port), the time from the Consul write until
/// every client ACKed (p50/p99), the encoded size of the update one proxy received (bytes) and
/// berth-control's CPU time per change. Every wait is bounded; all traffic stays on 127.0.0.1.
#[derive(Debug, Parser)]
// A flag given twice takes its last value, as wrapper scripts may add their own defaults first.
#[command(name = "berth-bench-fanout", version, args_override_self = true)]
struct Cli {
    /// Number of protocol clients (stand-ins for proxies) subscribed to berth-control
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = at_least_one)]
    proxies: usize,

    /// Number of services written into the Consul catalog (one route each)
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = at_least_one)]
    services: usize,

    /// Instances per service
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = at_least_one)]
    instances: usize,

    /// Number of single changes to time, one after another
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = at_least_one)]
    changes: usize,

    #[command(flatten)]
    setup: Setup,
}

/// The command line, with its defaults filled in.
struct Args {
    proxies: usize,
    services: usize,
    instances: usize,
    changes: usize,
    control: PathBuf,
    consul: ConsulKind,
}

fn parse_args() -> Result<Args> {
    let cli = Cli::parse();
    Ok(Args {
        proxies: cli.proxies,
        services: cli.services,
        instances: cli.instances,
        changes: cli.changes,
        control: cli.setup.control()?,
        consul: cli.setup.consul,
    })
}

/// What a client saw: one event per update received (and ACKed at once).
struct Event {
    client: usize,
    at: Instant,
    bytes: usize,
    kind: &'static str,
}

fn kind_of(update: &RouteUpdate) -> &'static str {
    match &update.body {
        Some(Body::Snapshot(_)) => "snapshot",
        Some(Body::UpToDate(_)) => "up_to_date",
        #[allow(unreachable_patterns)]
        Some(_) => "delta",
        None => "empty",
    }
}

/// One lightweight proxy: Hello, then an Ack for every update, until the stream ends.
async fn client(
    id: usize,
    url: String,
    events: mpsc::UnboundedSender<Event>,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Result<()> {
    let mut rpc = RouteDiscoveryClient::connect(url)
        .await
        .with_context(|| format!("client {id}: connecting"))?;
    let (tx, rx) = mpsc::channel(4);
    let hello = Kind::Hello(Hello {
        node_id: format!("bench-{id}"),
        entrypoints: vec!["http".into()],
        version: String::new(),
        build: "berth-bench-fanout".into(),
    });
    tx.send(ProxyMessage { kind: Some(hello) }).await?;
    let mut updates = rpc
        .stream(ReceiverStream::new(rx))
        .await
        .with_context(|| format!("client {id}: opening the stream"))?
        .into_inner();
    drop(permit);
    while let Some(update) = updates.message().await? {
        let ack = Kind::Ack(Ack {
            version: update.version.clone(),
            nonce: update.nonce.clone(),
        });
        tx.send(ProxyMessage { kind: Some(ack) }).await?;
        let event = Event {
            client: id,
            at: Instant::now(),
            bytes: update.encoded_len(),
            kind: kind_of(&update),
        };
        if events.send(event).is_err() {
            break;
        }
    }
    Ok(())
}

fn quantile(samples: &mut [f64], q: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[((samples.len() as f64 - 1.0) * q).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Receives events until `n` distinct clients have reported one at or after `since`; returns
/// each client's first such event.
async fn until_all(
    events: &mut mpsc::UnboundedReceiver<Event>,
    n: usize,
    since: Instant,
    timeout: Duration,
) -> Result<Vec<Event>> {
    let mut seen = vec![false; n];
    let mut firsts = Vec::with_capacity(n);
    let deadline = tokio::time::Instant::now() + timeout;
    while firsts.len() < n {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .with_context(|| format!("only {} of {n} proxies ACKed within {timeout:?}", firsts.len()))?
            .context("every client is gone")?;
        if event.at >= since && !seen[event.client] {
            seen[event.client] = true;
            firsts.push(event);
        }
    }
    Ok(firsts)
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
    let instance = |i: usize, k: usize, port: u16| Registration {
        node: format!("host-{}", (i + k) % 20),
        id: format!("svc-{i}-{k}"),
        service: format!("svc-{i}"),
        address: "127.0.0.1".into(),
        port,
        tags: traefik_tags(&format!("svc-{i}.example")),
    };
    let catalog: Vec<Registration> = (0..args.services)
        .flat_map(|i| (0..args.instances).map(move |k| (i, k)))
        .map(|(i, k)| instance(i, k, 10_000 + k as u16))
        .collect();
    api.register_many(&catalog).await?;
    println!(
        "catalog: {} services x {} instance(s); {} proxies (protocol clients in one process, one TCP \
         connection each); Consul {}",
        args.services,
        args.instances,
        args.proxies,
        consul.describe()
    );

    let (cp, grpc, admin) = spawn_control(&args.control, consul.http_addr(), &[("RUST_LOG", "warn")])?;
    let pid = cp.pid().context("berth-control's pid")?;
    let healthz = format!("http://{admin}/healthz");
    let started = Instant::now();
    while http::status(&healthz).await.ok() != Some(200) {
        ensure!(
            started.elapsed() < Duration::from_secs(120),
            "berth-control not healthy within 120 s: {}",
            cp.logs()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "control plane: healthy (catalog read) {:.0} ms after start",
        ms(started.elapsed())
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss_kib(pid)?;

    // Connect every client, 64 handshakes at a time.
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let gate = Arc::new(Semaphore::new(64));
    let connecting = Instant::now();
    let mut tasks = Vec::new();
    for id in 0..args.proxies {
        let (url, events_tx, gate) = (format!("http://{grpc}"), events_tx.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await?;
            client(id, url, events_tx, permit).await
        }));
    }
    drop(events_tx);
    let firsts = until_all(&mut events, args.proxies, connecting, Duration::from_secs(120)).await?;
    let all_in = connecting.elapsed();
    let snapshot_bytes = firsts.iter().map(|e| e.bytes).max().unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = rss_kib(pid)?;
    let per_proxy = (rss_after.saturating_sub(rss_before)) as f64 / args.proxies as f64;
    println!(
        "first snapshot: all {} proxies ACKed {:.0} ms after the first connect; snapshot {} bytes \
         encoded ({})",
        args.proxies,
        ms(all_in),
        snapshot_bytes,
        firsts.first().map_or("?", |e| e.kind)
    );
    println!(
        "control-plane memory: RSS {:.1} MiB before the proxies, {:.1} MiB with them: {:.1} KiB per \
         connected proxy",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        per_proxy
    );

    let mut all_acked = Vec::new();
    let mut each_acked = Vec::new();
    let mut bytes = Vec::new();
    let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
    let cpu_start = cpu_time(pid)?;
    for change in 0..args.changes {
        let i = (change * 7919) % args.services;
        // One instance gets a new port: one Consul transaction, one instance's change.
        let moved = instance(i, 0, 20_000 + (change % 1000) as u16);
        while events.try_recv().is_ok() {}
        let written = Instant::now();
        api.set_services(&[moved]).await?;
        let acks = until_all(&mut events, args.proxies, written, Duration::from_secs(30))
            .await
            .with_context(|| format!("change {change}: {}", cp.logs()))?;
        let last = acks.iter().map(|e| e.at).max().unwrap_or(written);
        all_acked.push(ms(last - written));
        each_acked.extend(acks.iter().map(|e| ms(e.at - written)));
        bytes.push(acks[0].bytes as f64);
        *kinds.entry(acks[0].kind).or_default() += 1;
        if (change + 1) % 10 == 0 {
            eprintln!("fanout: {} of {} changes done", change + 1, args.changes);
        }
        // Let stragglers (a second publication of the same change) settle before the next one.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let cpu = cpu_time(pid)? - cpu_start;
    let n = all_acked.len();
    println!(
        "per change (n={n}, one instance's port changed): Consul write -> every proxy ACKed: \
         p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        quantile(&mut all_acked, 0.5),
        quantile(&mut all_acked, 0.99),
        quantile(&mut all_acked, 1.0)
    );
    println!(
        "per change: each proxy's own ACK: p50 {:.1} ms, p99 {:.1} ms (n={})",
        quantile(&mut each_acked, 0.5),
        quantile(&mut each_acked, 0.99),
        each_acked.len()
    );
    println!(
        "per change: update to one proxy {:.0} bytes encoded (median; {kinds:?}); control-plane CPU \
         {:.1} ms per change with {} proxies ({:.0} ms over {n} changes, 10 ms ticks)",
        quantile(&mut bytes, 0.5),
        ms(cpu) / n as f64,
        args.proxies,
        ms(cpu)
    );
    println!(
        "control-plane RSS after the changes: {:.1} MiB",
        rss_kib(pid)? as f64 / 1024.0
    );
    for task in tasks {
        task.abort();
    }
    Ok(())
}
