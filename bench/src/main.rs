//! `berth-bench-propagation`: how long a Consul change takes to reach a proxy's routing.
//!
//! Against a running Consul, berth-control and berth-proxy (bench/run.sh starts them), it
//! repeatedly registers a new instance under a fresh host name and measures the time until the
//! proxy routes that host (200 instead of 404), then deregisters it and measures the time until
//! the proxy answers 404 again. The proxy is polled every millisecond on 127.0.0.1; each wait is
//! bounded by 10 seconds and the run by `--rounds`.
//!
//! Usage: berth-bench-propagation --consul http://127.0.0.1:PORT --proxy 127.0.0.1:PORT
//!        --backend-port PORT [--rounds 30]

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

struct Args {
    consul: String,
    proxy: String,
    backend_port: u16,
    rounds: usize,
}

fn parse_args() -> Result<Args> {
    let mut consul = None;
    let mut proxy = None;
    let mut backend_port = None;
    let mut rounds = 30;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--consul" => consul = Some(value),
            "--proxy" => proxy = Some(value),
            "--backend-port" => {
                backend_port = Some(
                    value
                        .parse()
                        .with_context(|| format!("--backend-port {value:?}"))?,
                )
            }
            "--rounds" => rounds = value.parse().with_context(|| format!("--rounds {value:?}"))?,
            other => bail!("unknown flag {other:?}"),
        }
    }
    Ok(Args {
        consul: consul.context("--consul is required")?,
        proxy: proxy.context("--proxy is required")?,
        backend_port: backend_port.context("--backend-port is required")?,
        rounds,
    })
}

async fn wait_status(client: &reqwest::Client, url: &str, host: &str, want: u16) -> Result<Duration> {
    let started = Instant::now();
    loop {
        let status = client
            .get(url)
            .header("host", host)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        if status == want {
            return Ok(started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(10) {
            bail!("{host} did not answer {want} within 10s (last {status})");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn summary(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let pick = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{name}: n={} min={:.1}ms median={:.1}ms p90={:.1}ms max={:.1}ms",
        samples.len(),
        samples[0].as_secs_f64() * 1e3,
        pick(0.5).as_secs_f64() * 1e3,
        pick(0.9).as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let url = format!("http://{}/", args.proxy);
    let (mut up, mut down) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        let id = format!("bench-{round}");
        let host = format!("bench-{round}.example");
        let definition = serde_json::json!({
            "ID": id, "Name": id, "Address": "127.0.0.1", "Port": args.backend_port,
            "Tags": ["traefik.enable=true", format!("traefik.frontend.rule=Host:{host}")],
        });
        let started = Instant::now();
        client
            .put(format!("{}/v1/agent/service/register", args.consul))
            .json(&definition)
            .send()
            .await?
            .error_for_status()?;
        let registered = started.elapsed();
        up.push(registered + wait_status(&client, &url, &host, 200).await?);
        let started = Instant::now();
        client
            .put(format!("{}/v1/agent/service/deregister/{id}", args.consul))
            .send()
            .await?
            .error_for_status()?;
        let deregistered = started.elapsed();
        down.push(deregistered + wait_status(&client, &url, &host, 404).await?);
    }
    summary("register -> routed", up);
    summary("deregister -> 404", down);
    Ok(())
}
