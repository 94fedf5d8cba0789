//! `berth-bench-propagation`: how long a Consul change takes until every proxy routes by it, with
//! Traefik's Consul Catalog provider measured the same way beside it.
//!
//! Starts a Consul dev agent, a static HTTP backend (in this process), berth-control and
//! `--proxies` berth-proxy processes (the binaries beside this one) and, unless `--no-traefik` or
//! Traefik is not installed (scripts/setup.sh traefik), Traefik 3 reading the same Consul
//! (`watch=true`, `providersThrottleDuration=100ms`, as in the parity tests). Then `--rounds`
//! times: one Consul transaction registers two new services with fresh host names (one with the
//! article's v1 tags for Berth, one with v3 tags for Traefik), and every proxy and Traefik are
//! polled every millisecond until they answer 200 for their host; then one transaction removes both
//! and they are polled until they answer 404. The Consul HTTP call is included in each time.
//! Reports p50/p99/max of: the time until every berth-proxy routes (refuses) the host, each
//! proxy's own time, and Traefik's.
//!
//! With `--docker N` (and a Docker Engine answering `docker info`; else it says so and skips),
//! it then builds the `demo` image from the binaries beside this one (deploy/build-images.sh),
//! starts berth-agent against the same Consul and, N times, times from `docker run -d` returning
//! (a demo container with `SERVICE_NAME`/`SERVICE_TAGS` routing a fresh host) until every proxy
//! answers 200 for it, then from `docker rm -f` returning until every proxy answers 404.
//! Every wait is bounded (10 s); all traffic stays on 127.0.0.1.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use berth_tests::traefik::{traefik_binary, Traefik, TraefikOptions};
use berth_tests::{free_port, Consul, Proc};
use clap::Parser;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::{at_least_one, binary_dir, spawn_control};

/// Measures how long a Consul change takes until every berth-proxy routes by it, with Traefik
/// measured the same way beside it.
///
/// Starts a Consul dev agent, a static backend, berth-control, --proxies berth-proxy processes and
/// (unless --no-traefik) Traefik 3 on the same Consul. Each round registers two services with fresh
/// host names in one Consul transaction and polls every proxy and Traefik every millisecond until
/// they answer 200, then removes them and polls until they answer 404; each time includes the
/// Consul call. Reports p50/p99/max in milliseconds: until every proxy, each proxy, and Traefik.
/// With --docker N it then also times `docker run` and `docker rm -f` of a demo container through
/// berth-agent. Every wait is bounded (10 s); all traffic stays on 127.0.0.1.
#[derive(Debug, Parser)]
// A flag given twice takes its last value, as wrapper scripts may add their own defaults first.
#[command(name = "berth-bench-propagation", version, args_override_self = true)]
struct Cli {
    /// Number of berth-proxy processes to start; each is polled on its own
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = at_least_one)]
    proxies: usize,

    /// Number of rounds (one register and one deregister each), so the samples behind each figure
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = at_least_one)]
    rounds: usize,

    /// Then also time N rounds of `docker run` and `docker rm -f` through berth-agent (builds the
    /// demo image; skipped without a Docker Engine); none when not given
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    docker: Option<usize>,

    /// Do not start Traefik (it is skipped anyway when not installed: scripts/setup.sh traefik)
    #[arg(long)]
    no_traefik: bool,

    /// Directory of the berth-control, berth-proxy and berth-agent binaries to run; the directory
    /// of this binary when not given
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
}

/// The command line, with its defaults filled in.
struct Args {
    proxies: usize,
    /// Rounds of `docker run`; 0 for none.
    docker: usize,
    rounds: usize,
    traefik: bool,
    dir: PathBuf,
}

fn parse_args() -> Result<Args> {
    let cli = Cli::parse();
    Ok(Args {
        proxies: cli.proxies,
        docker: cli.docker.unwrap_or(0),
        rounds: cli.rounds,
        traefik: !cli.no_traefik,
        dir: match cli.bin_dir {
            Some(dir) => dir,
            None => binary_dir()?,
        },
    })
}

/// A keep-alive HTTP/1.1 responder answering every request with a static 200.
async fn backend() -> Result<u16> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while let Ok(n) = conn.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n";
                        if conn.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    Ok(port)
}

/// Polls `addr` every millisecond until it answers `want` for `host`; the time since `since`.
async fn wait_status(
    client: &reqwest::Client,
    addr: &str,
    host: &str,
    want: u16,
    since: Instant,
) -> Result<Duration> {
    let url = format!("http://{addr}/");
    loop {
        let status = client
            .get(&url)
            .header("host", host)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        if status == want {
            return Ok(since.elapsed());
        }
        if since.elapsed() > Duration::from_secs(10) {
            bail!("{addr} did not answer {want} for {host} within 10 s (last {status})");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn summary(name: &str, samples: &mut [Duration]) {
    if samples.is_empty() {
        return;
    }
    samples.sort();
    let pick = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{name}: n={} p50={:.1}ms p99={:.1}ms max={:.1}ms",
        samples.len(),
        pick(0.5).as_secs_f64() * 1e3,
        pick(0.99).as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3
    );
}

async fn txn(client: &reqwest::Client, consul: &str, ops: serde_json::Value) -> Result<()> {
    let answer = client.put(format!("{consul}/v1/txn")).json(&ops).send().await?;
    let status = answer.status();
    if !status.is_success() {
        let body = answer.text().await.unwrap_or_default();
        bail!("Consul refused the transaction {ops} ({status}): {body}");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let consul = Consul::start().await?;
    let port = backend().await?;
    let (_cp, grpc, _) = spawn_control(
        &args.dir.join("berth-control"),
        &consul.http_addr,
        &[("RUST_LOG", "warn")],
    )?;
    let mut proxies = Vec::new();
    let mut addrs = Vec::new();
    for i in 0..args.proxies {
        let addr = format!("127.0.0.1:{}", free_port());
        let proc = Proc::spawn(
            "berth-proxy",
            &args.dir.join("berth-proxy"),
            &[
                "--control-plane",
                &format!("http://{grpc}"),
                "--entrypoint",
                &format!("http={addr}"),
                "--admin-addr",
                &format!("127.0.0.1:{}", free_port()),
                "--node-id",
                &format!("prop-{i}"),
            ],
            &[("RUST_LOG", "warn")],
        )?;
        proxies.push(proc);
        addrs.push(addr);
    }
    let traefik = if args.traefik && traefik_binary().is_ok() {
        let options = TraefikOptions {
            entrypoints: vec!["web".into()],
            ..TraefikOptions::default()
        };
        Some(Traefik::start(&consul.http_addr, &options).await?)
    } else {
        None
    };
    let traefik_addr = match &traefik {
        Some(t) => Some(t.addr("web")?.to_string()),
        None => None,
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let consul_url = consul.http_addr.clone();
    txn(
        &client,
        &consul_url,
        json!([{ "Node": { "Verb": "set", "Node": { "Node": "bench", "Address": "127.0.0.1" } } }]),
    )
    .await?;
    // Every proxy is connected and routing (404 for an unknown host) before the first round.
    for addr in &addrs {
        wait_status(&client, addr, "nothing.example", 404, Instant::now()).await?;
    }
    println!(
        "{} berth-proxies{} polled every 1 ms; Consul HTTP call included; {} rounds",
        args.proxies,
        if traefik.is_some() {
            " and Traefik (consulCatalog watch=true, providersThrottleDuration=100ms)"
        } else {
            ""
        },
        args.rounds
    );

    let (mut up_all, mut up_each, mut up_traefik) = (Vec::new(), Vec::new(), Vec::new());
    let (mut down_all, mut down_each, mut down_traefik) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..args.rounds {
        let (berth, t) = (format!("b{round}"), format!("t{round}"));
        let (berth_host, t_host) = (format!("{berth}.example"), format!("{t}.example"));
        let service = |id: &str, tags: Vec<String>| {
            json!({ "Service": { "Verb": "set", "Node": "bench", "Service": {
                "ID": id, "Service": id, "Address": "127.0.0.1", "Port": port, "Tags": tags } } })
        };
        let ops = json!([
            service(
                &berth,
                vec![
                    "traefik.enable=true".into(),
                    format!("traefik.frontend.rule=Host:{berth_host}")
                ]
            ),
            service(
                &t,
                vec![
                    "traefik.enable=true".into(),
                    format!("traefik.http.routers.{t}.rule=Host(`{t_host}`)")
                ]
            ),
        ]);
        for (register, ops) in [
            (true, ops),
            (
                false,
                json!([
                    { "Service": { "Verb": "delete", "Node": "bench", "Service": { "ID": berth, "Service": berth } } },
                    { "Service": { "Verb": "delete", "Node": "bench", "Service": { "ID": t, "Service": t } } },
                ]),
            ),
        ] {
            let want = if register { 200 } else { 404 };
            let started = Instant::now();
            txn(&client, &consul_url, ops).await?;
            let each = wait_all(&client, &addrs, &berth_host, want, started);
            let of_traefik = async {
                match &traefik_addr {
                    Some(a) => wait_status(&client, a, &t_host, want, started).await.map(Some),
                    None => Ok(None),
                }
            };
            let (each, of_traefik) = tokio::join!(each, of_traefik);
            let each = each?;
            let all = each.iter().copied().max().unwrap_or_default();
            let (all_v, each_v, traefik_v) = if register {
                (&mut up_all, &mut up_each, &mut up_traefik)
            } else {
                (&mut down_all, &mut down_each, &mut down_traefik)
            };
            all_v.push(all);
            each_v.extend(each);
            match of_traefik {
                Ok(Some(d)) => traefik_v.push(d),
                Ok(None) => {}
                Err(e) => eprintln!("round {round}: traefik: {e:#}"),
            }
        }
    }
    summary("register -> every berth-proxy routes", &mut up_all);
    summary("register -> one berth-proxy routes", &mut up_each);
    summary("register -> traefik routes", &mut up_traefik);
    summary("deregister -> every berth-proxy answers 404", &mut down_all);
    summary("deregister -> one berth-proxy answers 404", &mut down_each);
    summary("deregister -> traefik answers 404", &mut down_traefik);
    if args.docker > 0 {
        docker_rounds(&args, &consul, &client, &addrs).await?;
    }
    drop(proxies);
    Ok(())
}

/// Polls every address concurrently (one task each) until it answers `want` for `host`; each
/// time is counted from `since`, in the order of `addrs`.
async fn wait_all(
    client: &reqwest::Client,
    addrs: &[String],
    host: &str,
    want: u16,
    since: Instant,
) -> Result<Vec<Duration>> {
    let tasks: Vec<_> = addrs
        .iter()
        .map(|addr| {
            let (client, addr, host) = (client.clone(), addr.clone(), host.to_string());
            tokio::spawn(async move { wait_status(&client, &addr, &host, want, since).await })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await??);
    }
    Ok(out)
}

/// `docker run` through berth-agent: see the module documentation.
async fn docker_rounds(
    args: &Args,
    consul: &Consul,
    client: &reqwest::Client,
    addrs: &[String],
) -> Result<()> {
    use berth_tests::docker::{self, Run};
    if let Err(why) = docker::engine() {
        println!(
            "docker run -> routed: skipped, no Docker Engine ({why}); scripts/setup.sh docker starts one"
        );
        return Ok(());
    }
    let script = berth_tests::workspace_root()
        .join("deploy")
        .join("build-images.sh");
    let built = std::process::Command::new("bash")
        .arg(&script)
        .arg("--bin-dir")
        .arg(&args.dir)
        .arg("demo")
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    ensure!(
        built.status.success(),
        "{} --bin-dir {} demo failed: {}",
        script.display(),
        args.dir.display(),
        String::from_utf8_lossy(&built.stderr)
    );
    let registry = format!("consul://127.0.0.1:{}", consul.http_port);
    let _agent = Proc::spawn(
        "berth-agent",
        &args.dir.join("berth-agent"),
        &["-hostname=bench-host", "-ip=127.0.0.1", &registry],
        &[("RUST_LOG", "warn")],
    )?;
    let (mut up, mut down) = (Vec::new(), Vec::new());
    for round in 0..args.docker {
        let name = format!("dk{round}-{}", std::process::id());
        let host = format!("{name}.example");
        let tags = format!("traefik.enable=true,traefik.frontend.rule=Host:{host}");
        let run = Run::new(&docker::image("demo"))
            .name("berth-bench")
            .env("SERVICE_NAME", &name)
            .env("SERVICE_TAGS", &tags)
            .publish("127.0.0.1::9090")
            .no_healthcheck();
        let mut container = tokio::task::spawn_blocking(move || run.start()).await??;
        let started = Instant::now();
        let each = wait_all(client, addrs, &host, 200, started).await?;
        up.push(each.into_iter().max().unwrap_or_default());
        let container = tokio::task::spawn_blocking(move || container.remove().map(|()| container));
        let _removed = container.await??;
        let removed = Instant::now();
        let each = wait_all(client, addrs, &host, 404, removed).await?;
        down.push(each.into_iter().max().unwrap_or_default());
    }
    summary("docker run returned -> every berth-proxy routes", &mut up);
    summary(
        "docker rm -f returned -> every berth-proxy answers 404",
        &mut down,
    );
    Ok(())
}
